#!/usr/bin/env bash
# Builds the bootable Debian 12 whole-disk image of the single-disk tests (`format: disk`).
#
#   [IMPRINT_IMAGE_ARCH=x86_64|aarch64] images/disk.sh OUTDIR
#
# Layout (GPT, 512-byte sectors), numbered as Debian's and Ubuntu's cloud images are,
# with entries 2-13 empty (so the tests deploy a table with gaps, as operators do):
#   14 bios_grub  sectors 34-2047  GRUB i386-pc core.img (BIOS boot; boot.img in the MBR)
#   15 ESP        64 MiB vfat      /EFI/BOOT/BOOTX64.EFI (grub-mkstandalone, x86_64-efi)
#   1  root       ext4 `debroot`   the rootfs of rootfs.sh, sized to its content + ~15%
# aarch64 (UEFI only, QEMU virt + AAVMF): no bios_grub, /EFI/BOOT/BOOTAA64.EFI
# (arm64-efi), root typed "Linux root (ARM64)" of the Discoverable Partitions spec.
# The loaders find the root filesystem by label and read /boot/grub/grub.cfg from it,
# which boots /boot/vmlinuz + /boot/initrd.img with root=LABEL=debroot. No configdrive
# partition: the agent appends one after the root.
#
# Writes OUTDIR/debian-12-disk.raw.zst, .sha256 and .sha512 (hex, of the .zst file), .raw.size (bytes,
# decimal), disk.json and disk.key (debian-12-arm64-disk.* for aarch64); a rerun is a
# no-op while disk.key matches this script, the rootfs key and the architecture. No
# mounts, no loop devices: filesystems are made in files (mkfs.ext4 -d, mkfs.vfat +
# mtools) and copied in at their offsets. The host's grub-mkstandalone/grub-mkimage
# build the loaders from the modules in the image's own /usr/lib/grub.
set -euo pipefail

# The body is one function, read whole before it runs: editing this file during a
# build cannot derail the build.
main() {

here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
# Per architecture: the mark in file names, GRUB's EFI platform and the name the
# firmware boots from a removable disk, the root partition's type, the serial console.
case ${IMPRINT_IMAGE_ARCH:-x86_64} in
  x86_64 | amd64)
    arch=x86_64 tag= efi_platform=x86_64-efi efi_loader=BOOTX64.EFI root_type=8300
    console="console=tty0 console=ttyS0,115200" ;;
  aarch64 | arm64)
    arch=aarch64 tag=-arm64 efi_platform=arm64-efi efi_loader=BOOTAA64.EFI
    root_type=b921b045-1df0-41c3-af44-4c6f280d3fae console="console=ttyAMA0,115200n8" ;;
  *) echo "disk.sh: IMPRINT_IMAGE_ARCH=$IMPRINT_IMAGE_ARCH: x86_64 or aarch64" >&2; exit 2 ;;
esac
name=debian-12$tag-disk.raw.zst
size_name=debian-12$tag-disk.raw.size
label=debroot

bash "$here/rootfs.sh" "$out"
key=$({ cat "$0" "$out/rootfs.key"; echo "$arch"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/disk.key" ] && [ "$(cat "$out/disk.key")" = "$key" ] \
  && [ -f "$out/$name" ] && [ -f "$out/$name.sha256" ] && [ -f "$out/$name.sha512" ] \
  && [ -f "$out/$size_name" ]; then
  echo "disk: up to date in $out"
  exit 0
fi

rm -f "$out/disk.key"
work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM
root=$work/root
start=$(date +%s)
mkdir "$root"
tar --numeric-owner --xattrs --xattrs-include='*' --acls -xpf "$out/debian-12$tag-rootfs.tar.zst" \
  -I zstd -C "$root"

# This image only ever boots in VMs with virtio or Intel/Realtek NICs: drop the modules
# of hardware it cannot meet (about 230 MiB of the 390 MiB kernel package), compress
# the rest, and rebuild modules.dep. The initramfs was built before, with the full set.
for kdir in "$root"/usr/lib/modules/*/; do
  kver=$(basename "$kdir")
  k=$kdir/kernel
  rm -rf "$k/sound" "$k"/drivers/{gpu,media,infiniband,iio,staging,comedi,hwmon,mtd,bluetooth,isdn,atm} \
    "$k"/drivers/net/{wireless,can,usb} "$k"/net/{wireless,mac80211,bluetooth,ceph,rxrpc} \
    "$k"/fs/{ocfs2,gfs2,ceph,nfs,nfsd,smb,btrfs,f2fs,ubifs,reiserfs}
  find "$k/drivers/net/ethernet" -mindepth 1 -maxdepth 1 ! -name intel ! -name realtek -exec rm -rf {} +
  find "$k/drivers/scsi" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  # libkmod (Debian's is built with zstd) loads compressed modules itself.
  find "$k" -name '*.ko' -print0 | xargs -0 -r -P "$(nproc)" -n 64 zstd -q --rm -9
  depmod -b "$root" "$kver"
done

mkdir -p "$root/boot/efi" "$root/boot/grub"
cat > "$root/etc/fstab" <<EOF
# <file system>  <mount point>  <type>  <options>  <dump>  <pass>
LABEL=$label    /          ext4  errors=remount-ro  0  1
LABEL=ESP        /boot/efi  vfat  umask=0077,nofail  0  2
EOF

kernel_args="root=LABEL=$label $console rw"
# x86: GRUB drives the serial port itself as well as the console. aarch64: the firmware's
# console is the PL011 already, so GRUB's console is all (a second terminal on the same
# port would print everything twice).
case $arch in
  x86_64) terminal=$'serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console' ;;
  aarch64) terminal='terminal_output console' ;;
esac
cat > "$root/boot/grub/grub.cfg" <<EOF
# Written by imprint's images/disk.sh; read by the EFI (and on x86 the BIOS) loader.
$terminal
set timeout=1
menuentry 'Debian GNU/Linux 12' {
  search --no-floppy --label $label --set=root
  echo 'Loading Linux ...'
  linux /boot/vmlinuz $kernel_args
  initrd /boot/initrd.img
}
EOF
[ -e "$root/boot/vmlinuz" ] && [ -e "$root/boot/initrd.img" ] \
  || { echo "disk.sh: the rootfs has no /boot/vmlinuz or /boot/initrd.img" >&2; exit 1; }

# The loaders' embedded config: find the root by label, hand over to its grub.cfg.
cat > "$work/early.cfg" <<EOF
search --no-floppy --label $label --set=root
configfile (\$root)/boot/grub/grub.cfg
EOF
modules="part_gpt ext2 fat search search_label configfile normal linux echo serial terminal test"

# UEFI: a standalone GRUB with the modules preloaded and nothing else in its memdisk.
grub-mkstandalone -O "$efi_platform" -d "$root/usr/lib/grub/$efi_platform" \
  --modules="$modules all_video efi_gop" --install-modules="$modules all_video efi_gop" \
  --locales= --fonts= --themes= \
  -o "$work/$efi_loader" "boot/grub/grub.cfg=$work/early.cfg"

# BIOS (x86 only): core.img with everything built in, embedded in the bios_grub partition.
if [ "$arch" = x86_64 ]; then
  grub-mkimage -O i386-pc -d "$root/usr/lib/grub/i386-pc" -p '(hd0,gpt1)/boot/grub' \
    -c "$work/early.cfg" -o "$work/core.img" biosdisk $modules
fi

# Sizes: root = content + 15% + 32 MiB for the journal and metadata, in whole MiB.
content_kib=$(du -sk "$root" | cut -f1)
files=$(find "$root" -xdev | wc -l)
root_mib=$(( (content_kib * 115 / 100 / 1024) + 32 ))
esp_mib=64
disk_mib=$((1 + esp_mib + root_mib + 1))
raw=$work/disk.raw
truncate -s "${disk_mib}M" "$raw"
# bios_grub in a run of its own: sgdisk applies one alignment to the whole command line.
if [ "$arch" = x86_64 ]; then
  sgdisk -a 1 -n 14:34:2047 -t 14:ef02 -c 14:bios "$raw" > /dev/null
fi
sgdisk -n "15:1MiB:+${esp_mib}MiB" -t 15:ef00 -c 15:esp -n 1:0:0 -t "1:$root_type" -c 1:root "$raw" > /dev/null

# `sgdisk -i N` prints "First sector: S (at ...)" and "Last sector: E (at ...)".
part_sectors() {
  sgdisk -i "$1" "$raw" | awk '/^First sector:/ {f=$3} /^Last sector:/ {l=$3} END {print f, l - f + 1}'
}
read -r esp_start esp_len < <(part_sectors 15)
read -r root_start root_len < <(part_sectors 1)

truncate -s "$((root_len * 512))" "$work/root.ext4"
mkfs.ext4 -q -F -L "$label" -N $((files * 12 / 10 + 4096)) -d "$root" "$work/root.ext4" "$((root_len / 2))k"
truncate -s "$((esp_len * 512))" "$work/esp.vfat"
mkfs.vfat -n ESP "$work/esp.vfat" > /dev/null
mmd -i "$work/esp.vfat" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.vfat" "$work/$efi_loader" "::/EFI/BOOT/$efi_loader"

dd if="$work/esp.vfat" of="$raw" bs=512 seek="$esp_start" conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$raw" bs=512 seek="$root_start" conv=notrunc,sparse status=none

if [ "$arch" = x86_64 ]; then
  read -r bios_start bios_len < <(part_sectors 14)
  core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
  [ "$core_sectors" -le "$bios_len" ] || { echo "disk.sh: core.img ($core_sectors sectors) exceeds bios_grub" >&2; exit 1; }
  # What grub-bios-setup would do, by hand: boot.img's code (not the partition table) into
  # the MBR, pointing at core.img's first sector; core.img's blocklist pointing at the rest.
  python3 - "$raw" "$root/usr/lib/grub/i386-pc/boot.img" "$work/core.img" "$bios_start" <<'EOF'
import struct, sys
raw, boot_img, core_img, start = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
boot = bytearray(open(boot_img, "rb").read())
core = bytearray(open(core_img, "rb").read())
core += b"\0" * (-len(core) % 512)
struct.pack_into("<Q", boot, 0x5C, start)       # GRUB_BOOT_MACHINE_KERNEL_SECTOR
boot[0x66:0x68] = b"\x90\x90"                    # GRUB_BOOT_MACHINE_DRIVE_CHECK: a hard disk
struct.pack_into("<QH", core, 0x200 - 12, start + 1, len(core) // 512 - 1)  # diskboot blocklist
with open(raw, "r+b") as f:
    f.seek(0)
    f.write(boot[:440])                          # keep the protective MBR's signature and table
    f.seek(start * 512)
    f.write(core)
EOF
fi
sgdisk -v "$raw" | grep -q 'No problems found' || { sgdisk -v "$raw" >&2; exit 1; }

raw_size=$(stat -c %s "$raw")
zstd -q -T0 -12 -o "$work/$name" "$raw"
sha256=$(sha256sum "$work/$name" | cut -d' ' -f1)
sha512=$(sha512sum "$work/$name" | cut -d' ' -f1)
printf '%s\n' "$sha256" > "$work/$name.sha256"
printf '%s\n' "$sha512" > "$work/$name.sha512"
printf '%s\n' "$raw_size" > "$work/$size_name"
elapsed=$(($(date +%s) - start))
cat > "$work/disk.json" <<EOF
{
 "image": "$name",
 "format": "disk",
 "architecture": "$arch",
 "compression": "zstd",
 "raw_size": $raw_size,
 "size": $(stat -c %s "$work/$name"),
 "sha256": "$sha256",
 "sha512": "$sha512",
 "root_label": "$label",
 "kernel_args": "$kernel_args",
 "key": "$key",
 "build_seconds": $elapsed
}
EOF
mv "$work/$name" "$work/$name.sha256" "$work/$name.sha512" "$work/$size_name" "$work/disk.json" "$out/"
echo "$key" > "$out/disk.key"
echo "disk: $out/$name (raw $raw_size bytes, zst $(stat -c %s "$out/$name") bytes, ${elapsed}s)"
}

main "$@"
