#!/usr/bin/env bash
# Builds the rootfs tar and the whole-disk image into
# ${CARGO_TARGET_DIR:-target}/images/<key>/ (key: the recipes' content), once:
# a rerun with unchanged recipes is a no-op, and concurrent runs wait on a lock
# and then find the outputs. Prints the output paths; the last line is the directory.
set -euo pipefail

# The body is one function, read whole before it runs: editing this file during a
# build cannot derail the build.
main() {
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
base=${CARGO_TARGET_DIR:-$repo/target}/images
key=$(cat "$here/build.sh" "$here/rootfs.sh" "$here/disk.sh" "$here/packages.txt" | sha256sum | cut -c1-16)
out=$base/$key
mkdir -p "$out"
exec 9> "$base/.lock"
flock -w 3600 9 || { echo "build.sh: waited an hour for $base/.lock" >&2; exit 1; }
echo "$key" > "$out/key"
bash "$here/disk.sh" "$out" >&2
for f in debian-12-rootfs.tar.zst debian-12-rootfs.tar.zst.sha512 manifest.json \
  debian-12-disk.raw.zst debian-12-disk.raw.zst.sha256 debian-12-disk.raw.size; do
  echo "$out/$f"
done
echo "$out"
}

main "$@"
