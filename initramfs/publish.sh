#!/usr/bin/env bash
# Publishes boot artifacts under names that are their content, so no cache (TFTP, HTTP
# proxy, CDN, a host's own iPXE) can ever hand out a stale kernel with a new initramfs:
#
#   initramfs/publish.sh [--console ARGS] STORE VERSION KERNEL_VERSION vmlinuz initramfs.img [imprint.iso]
#
# --console: the script's default console arguments (imprint_console), for the
# architecture of the kernel (default: console=tty0 console=ttyS0,115200n8).
#
# STORE gets (docs/boot.md "Boot artifacts named by content"):
#   sha256/<hex>                       each artifact, named by its SHA-256
#   imprint-<version>-<hex12>.ipxe     an iPXE script loading the kernel and initramfs
#                                      by those names (<hex12>: its own digest's start)
#   imprint-<version>-<hex12>.json     the manifest: name, digest, size of each artifact,
#                                      kernel and imprint versions, the script
#   current.json, current.ipxe         copies of the newest manifest and script, the only
#                                      names whose content ever changes (replaced whole)
#
# A published name is never written again: a file is created under a temporary name and
# linked to its final name only if that name is free (so two publishers racing each
# other are both safe); a name already taken must hold exactly its content, else the
# store is damaged and publishing stops without touching it.
set -euo pipefail
export LC_ALL=C

die() { echo "publish: error: $*" >&2; exit 1; }
console="console=tty0 console=ttyS0,115200n8"
if [ "${1:-}" = --console ]; then console=${2:?--console needs the arguments}; shift 2; fi
[ $# -ge 5 ] || die "usage: publish.sh [--console ARGS] STORE VERSION KERNEL_VERSION vmlinuz initramfs.img [imprint.iso]"
store=$1 version=$2 kver=$3
shift 3
mkdir -p "$store/sha256"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Puts file $1 at $store/$2 unless that name exists; an existing name must hold the
# same bytes.
put() {
  local src=$1 name=$2 dest=$store/$2 tmp
  if [ -e "$dest" ]; then
    cmp -s "$src" "$dest" && return 0
    die "$dest exists with other content: the store is damaged (a partial copy, or someone edited it); nothing was replaced — remove that file by hand and publish again"
  fi
  tmp=$(mktemp "$store/.publish.XXXXXX")
  cp "$src" "$tmp"
  chmod 0644 "$tmp"
  sync "$tmp"
  if ! ln "$tmp" "$dest" 2>/dev/null; then
    # Another publisher got there first: its file must be the same.
    rm -f "$tmp"
    cmp -s "$src" "$dest" || die "$dest was published at the same time with other content"
    return 0
  fi
  rm -f "$tmp"
}

# Replaces the pointer $store/$2 with file $1 in one rename.
point() {
  local tmp
  tmp=$(mktemp "$store/.publish.XXXXXX")
  cp "$1" "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$store/$2"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

entries=() kernel= initrd=
for f in "$@"; do
  [ -f "$f" ] || die "$f does not exist"
  name=$(basename "$f") digest=$(sha "$f") size=$(stat -c %s "$f")
  put "$f" "sha256/$digest"
  entries+=("$(printf '    {"name": "%s", "sha256": "%s", "size": %s, "path": "sha256/%s"}' \
    "$name" "$digest" "$size" "$digest")")
  case $name in
    vmlinuz) kernel=$digest ;;
    initramfs.img) initrd=$digest ;;
  esac
done
[ -n "$kernel" ] && [ -n "$initrd" ] || die "a kernel (vmlinuz) and an initramfs (initramfs.img) are needed"

# The script: boot.ipxe's variables, the artifacts by digest (paths relative to the
# script's own URL unless imprint_base says otherwise).
cat > "$work/script" <<EOF
#!ipxe
# imprint $version, kernel $kver: every file this script loads is named by its SHA-256,
# so it can be cached forever. Variables as for boot.ipxe (docs/boot.md):
# imprint_base, imprint_config, imprint_console, imprint_kargs.
isset \${imprint_console} || set imprint_console $console
isset \${imprint_config} && set imprint_cfgarg imprint.config=\${imprint_config} || set imprint_cfgarg
isset \${imprint_kargs} || set imprint_kargs
echo imprint $version: loading kernel sha256:$kernel and initramfs sha256:$initrd
:load
kernel \${imprint_base}sha256/$kernel initrd=initramfs.img \${imprint_console} \${imprint_cfgarg} \${imprint_kargs} || goto failed
initrd --name initramfs.img \${imprint_base}sha256/$initrd || goto failed
boot || goto failed
:failed
echo imprint: could not load the ramdisk from \${imprint_base}sha256/; retrying in 10 seconds
sleep 10
goto load
EOF
script_digest=$(sha "$work/script")
script_name=imprint-$version-${script_digest:0:12}.ipxe
put "$work/script" "$script_name"

{
  printf '{\n  "imprint_version": "%s",\n  "kernel_version": "%s",\n' "$version" "$kver"
  printf '  "ipxe": {"name": "%s", "sha256": "%s"},\n  "artifacts": [\n' "$script_name" "$script_digest"
  for i in "${!entries[@]}"; do
    [ "$i" -gt 0 ] && printf ',\n'
    printf '%s' "${entries[$i]}"
  done
  printf '\n  ]\n}\n'
} > "$work/manifest"
manifest_digest=$(sha "$work/manifest")
manifest_name=imprint-$version-${manifest_digest:0:12}.json
put "$work/manifest" "$manifest_name"

point "$work/manifest" current.json
point "$work/script" current.ipxe
echo "publish: $store/$manifest_name (script $script_name)"
