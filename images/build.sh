#!/usr/bin/env bash
# Builds the rootfs tar and the whole-disk image into
# ${CARGO_TARGET_DIR:-target}/images/<key>/ (key: the recipes' content and the
# architecture), once: a rerun with unchanged recipes is a no-op, and concurrent runs
# wait on a lock and then find the outputs. Prints the output paths; the last line is
# the directory.
#
#   [IMPRINT_IMAGE_ARCH=x86_64|aarch64] images/build.sh
#
# x86_64 (the default) makes debian-12-*; aarch64 (arm64) makes debian-12-arm64-*, in
# its own directory and under its own lock.
set -euo pipefail

# The body is one function, read whole before it runs: editing this file during a
# build cannot derail the build.
main() {
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
case ${IMPRINT_IMAGE_ARCH:-x86_64} in
  x86_64 | amd64) arch=x86_64 tag= ;;
  aarch64 | arm64) arch=aarch64 tag=-arm64 ;;
  *) echo "build.sh: IMPRINT_IMAGE_ARCH=$IMPRINT_IMAGE_ARCH: x86_64 or aarch64" >&2; exit 2 ;;
esac
export IMPRINT_IMAGE_ARCH=$arch
base=${CARGO_TARGET_DIR:-$repo/target}/images
key=$({ cat "$here/build.sh" "$here/rootfs.sh" "$here/disk.sh" "$here/packages.txt"; echo "$arch"; } \
  | sha256sum | cut -c1-16)
out=$base/$key
mkdir -p "$out"
# One lock per architecture: an arm64 build (slow, emulated) does not hold up x86's.
exec 9> "$base/.lock$tag"
flock -w 3600 9 || { echo "build.sh: waited an hour for $base/.lock$tag" >&2; exit 1; }
echo "$key" > "$out/key"
bash "$here/disk.sh" "$out" >&2
for f in "debian-12$tag-rootfs.tar.zst" "debian-12$tag-rootfs.tar.zst.sha512" manifest.json \
  "debian-12$tag-disk.raw.zst" "debian-12$tag-disk.raw.zst.sha256" "debian-12$tag-disk.raw.size"; do
  echo "$out/$f"
done
echo "$out"
}

main "$@"
