#!/usr/bin/env bash
# Builds the boot artifacts from Debian's kernel, the static agent and a few tools:
#   initramfs/build.sh initramfs   → out/vmlinuz, out/initramfs.img, out/boot.ipxe
#   initramfs/build.sh iso         → the above + out/imprint.iso (hybrid BIOS/UEFI, CD/USB)
# and each time out/boot/, the same files named by their SHA-256 (publish.sh).
# Each artifact is cached under target/initramfs-cache/ by a key over every input
# (kernel version, package versions, the agent's hash, this directory's files), so a
# second run with nothing changed only copies. Must run as root (device nodes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$root/out
cache=$root/target/initramfs-cache
what=${1:-initramfs}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "initramfs: $*"; }
die() { echo "initramfs: error: $*" >&2; exit 1; }

agent=$out/imprint
[ -x "$agent" ] || die "$agent is missing: run 'make agent' first"
file "$agent" | grep -q 'statically linked' || die "$agent is not statically linked"

# The newest installed kernel that has its modules (IMPRINT_KVER overrides).
kver=${IMPRINT_KVER:-}
if [ -z "$kver" ]; then
  for k in $(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V); do
    [ -f "/lib/modules/$k/modules.dep" ] && kver=$k
  done
fi
[ -n "$kver" ] || die "no kernel with modules in /boot and /lib/modules: install linux-image-amd64 (make deps)"
kmods=/lib/modules/$kver

# Tools the agent runs, by the name it calls them. Symlinks are kept as symlinks.
tools=(mke2fs mkfs.ext4 e2fsck resize2fs mkfs.xfs xfs_growfs mkfs.fat mkfs.vfat mkswap
       mdadm lvm sgdisk kexec kmod)
lvm_links=(pvcreate pvremove pvs pvscan vgcreate vgchange vgremove vgs vgscan
           lvcreate lvchange lvremove lvs lvscan)
kmod_links=(modprobe insmod rmmod lsmod modinfo depmod)
tool_pkgs=(e2fsprogs xfsprogs dosfstools util-linux mdadm lvm2 gdisk kexec-tools kmod
           busybox-static libc6 "linux-image-$kver")
iso_pkgs=(grub-efi-amd64-bin grub-common isolinux syslinux-common xorriso mtools)

# Trust keys baked into the ramdisk's /etc/imprint/trust.d (docs/trust.md): the key
# files (*.pub, *.asc, *.pgp, *.gpg) of IMPRINT_TRUST_DIR, when it is set.
trust_dir=${IMPRINT_TRUST_DIR:-}
[ -z "$trust_dir" ] || [ -d "$trust_dir" ] || die "IMPRINT_TRUST_DIR=$trust_dir is not a directory"
trust_keys() { find . -maxdepth 1 -type f \( -name '*.pub' -o -name '*.asc' -o -name '*.pgp' -o -name '*.gpg' \) | LC_ALL=C sort; }

pkg_versions() { dpkg-query -W -f='${Package}=${Version}\n' "$@" 2>/dev/null | sort; }
inputs_key() {
  {
    echo "kernel=$kver"
    pkg_versions "${tool_pkgs[@]}"
    sha256sum "$agent" | cut -d' ' -f1
    (cd "$here" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    if [ -n "$trust_dir" ]; then (cd "$trust_dir" && trust_keys | xargs -r sha256sum); fi
    if [ "$1" = iso ]; then pkg_versions "${iso_pkgs[@]}"; fi
  } | sha256sum | cut -c1-20
}

size_of() { stat -c %s "$1"; }
human() { numfmt --to=iec-i --suffix=B "$(size_of "$1")"; }

# ---------------------------------------------------------------------------
build_initramfs() { # $1 = cache dir to fill
  local dest=$1 stage
  stage=$(mktemp -d "$root/target/initramfs-stage.XXXXXX")
  trap 'rm -rf "$stage"' RETURN
  mkdir -p "$stage"/{bin,sbin,etc/imprint,etc/lvm,lib64,dev,proc,sys,run,tmp,mnt,root,lib/modules,lib/firmware}
  chmod 1777 "$stage/tmp"

  # The agent is PID 1; `imprint` on the debug shell is the same binary.
  install -m 0755 "$agent" "$stage/init"
  ln -s /init "$stage/bin/imprint"
  if [ -n "$trust_dir" ]; then
    mkdir -p "$stage/etc/imprint/trust.d"
    (cd "$trust_dir" && trust_keys | while read -r k; do install -m 0644 "$k" "$stage/etc/imprint/trust.d/"; done)
    say "trust keys baked in: $(ls "$stage/etc/imprint/trust.d" | wc -l)"
  fi

  # busybox (static) for the debug shell and udhcpc; the real tools in /sbin win in PATH.
  install -m 0755 /bin/busybox "$stage/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    case $applet in busybox|init|linuxrc) continue ;; esac
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
  done

  # External tools and the shared libraries they need (ldd), with the dynamic loader.
  local t p libs=()
  for t in "${tools[@]}"; do
    p=$(command -v "$t") || die "tool $t not found: install its package (make deps)"
    local real; real=$(basename "$(readlink -f "$p")")
    if [ "$real" != "$t" ] && printf '%s\n' "${tools[@]}" | grep -qx "$real"; then
      ln -sf "$real" "$stage/sbin/$t"
    else
      install -m 0755 "$(readlink -f "$p")" "$stage/sbin/$t"
    fi
    libs+=($(ldd "$(readlink -f "$p")" | awk '/=> \//{print $3} /^\s*\/.*ld-linux/{print $1}'))
  done
  for t in "${lvm_links[@]}"; do ln -s lvm "$stage/sbin/$t"; done
  for t in "${kmod_links[@]}"; do ln -s kmod "$stage/sbin/$t"; done
  # glibc loads libgcc_s at run time for thread cancellation.
  for p in /lib/x86_64-linux-gnu/libgcc_s.so.1; do [ -f "$p" ] && libs+=("$p"); done
  local l
  for l in $(printf '%s\n' "${libs[@]}" | sort -u); do
    mkdir -p "$stage$(dirname "$l")"
    cp -L "$l" "$stage$l"
  done
  # The loader's canonical path, whatever ldd printed.
  [ -e "$stage/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$stage/lib64/"

  # Configuration the tools read.
  cp /etc/mke2fs.conf "$stage/etc/" 2>/dev/null || true
  install -m 0644 "$here/lvm.conf" "$stage/etc/lvm/lvm.conf"
  install -m 0755 "$here/udhcpc.script" "$stage/etc/imprint/udhcpc.script"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
  printf 'root:x:0:\n' > "$stage/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$stage/etc/hosts"
  : > "$stage/etc/resolv.conf"

  # The kernel opens /dev/console for PID 1 before anything is mounted.
  mknod -m 0600 "$stage/dev/console" c 5 1
  mknod -m 0666 "$stage/dev/null" c 1 3

  # Kernel modules: the list plus their dependencies, then depmod for the subset.
  local name missing=() ko
  local mods=()
  for name in $(sed 's/#.*//' "$here/modules.list"); do
    if ! modprobe -S "$kver" --show-depends "$name" >/dev/null 2>&1; then missing+=("$name"); continue; fi
    mods+=($(modprobe -S "$kver" --show-depends "$name" 2>/dev/null | awk '$1=="insmod"{print $2}'))
  done
  [ ${#missing[@]} -eq 0 ] || say "not in kernel $kver (skipped): ${missing[*]}"
  for ko in $(printf '%s\n' "${mods[@]}" | sort -u); do
    mkdir -p "$stage$(dirname "$ko")"
    cp "$ko" "$stage$ko"
  done
  for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$kmods/$f" ] && cp "$kmods/$f" "$stage$kmods/"
  done
  depmod -b "$stage" "$kver"

  # Firmware the chosen modules ask for, where a Debian package installed it.
  local fw nfw=0 nmiss=0
  for ko in $(printf '%s\n' "${mods[@]}" | sort -u); do
    for fw in $(modinfo -F firmware "$ko" 2>/dev/null); do
      local found=
      for p in "/lib/firmware/$fw" "/lib/firmware/$fw.xz" "/lib/firmware/$fw.zst"; do
        if [ -f "$p" ]; then
          mkdir -p "$stage$(dirname "$p")"; cp -L "$p" "$stage$p"; found=1; nfw=$((nfw+1)); break
        fi
      done
      [ -n "$found" ] || nmiss=$((nmiss+1))
    done
  done
  say "modules: $(printf '%s\n' "${mods[@]}" | sort -u | wc -l); firmware files: $nfw copied, $nmiss not installed on this machine (skipped)"

  # Reproducible archive: fixed times and owners, sorted names.
  find "$stage" -exec touch -h -d @0 {} +
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
     cpio -o -H newc -R 0:0 --reproducible --quiet) > "$dest/initramfs.cpio.tmp"
  zstd -q -19 -T0 --rm "$dest/initramfs.cpio.tmp" -o "$dest/initramfs.img"
  cp "/boot/vmlinuz-$kver" "$dest/vmlinuz"
}

# ---------------------------------------------------------------------------
build_iso() { # $1 = cache dir holding vmlinuz + initramfs.img; writes imprint.iso there
  local dest=$1 stage work id
  stage=$(mktemp -d "$root/target/iso-stage.XXXXXX")
  work=$(mktemp -d "$root/target/iso-work.XXXXXX")
  trap 'rm -rf "$stage" "$work"' RETURN
  id=$(basename "$dest")
  mkdir -p "$stage"/{boot/grub,isolinux,imprint}
  cp "$dest/vmlinuz" "$dest/initramfs.img" "$stage/boot/"
  # A file unique to this build, so GRUB finds this medium and no other.
  echo "imprint boot medium $id" > "$stage/imprint/id-$id"

  # The reserved customization area (see agent/src/iso.rs): magic, then zeros.
  local area=262144
  head -c "$area" /dev/zero > "$stage/imprint/config.img"
  # Header: magic (23 bytes, zero-padded to 32), then the area size as u32 little-endian.
  printf 'IMPRINT-CONFIG-AREA-v1\n' | dd of="$stage/imprint/config.img" conv=notrunc status=none
  printf '\x00\x00\x04\x00' | dd of="$stage/imprint/config.img" bs=1 seek=32 conv=notrunc status=none
  printf '%s' 'This area holds the provisioning document written by `imprint iso customize`.' \
    > "$stage/imprint/README.txt"

  local kargs="console=tty0 console=ttyS0,115200n8 imprint.iso=1"

  # BIOS: isolinux (El Torito) and the isohybrid MBR for USB sticks.
  cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$stage/isolinux/"
  cat > "$stage/isolinux/isolinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT imprint
PROMPT 0
TIMEOUT 1
LABEL imprint
  KERNEL /boot/vmlinuz
  INITRD /boot/initramfs.img
  APPEND $kargs
EOF

  # UEFI: a GRUB image with its config built in, on a small FAT image (El Torito EFI
  # entry for CDs, GPT partition for USB sticks).
  cat > "$work/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_output serial console
echo "imprint: loading kernel and initramfs"
search --no-floppy --set=root --file /imprint/id-$id
linux /boot/vmlinuz $kargs
initrd /boot/initramfs.img
boot
EOF
  grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -p /EFI/BOOT -c "$work/grub.cfg" \
    part_gpt part_msdos iso9660 fat search search_fs_file linux echo serial terminal \
    efi_gop efi_uga normal configfile
  local kib=$(( ($(size_of "$work/BOOTX64.EFI") / 1024) + 256 ))
  mkfs.vfat -C -n IMPRINT_EFI "$stage/boot/grub/efi.img" "$kib" >/dev/null
  mmd -i "$stage/boot/grub/efi.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$stage/boot/grub/efi.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

  find "$stage" -exec touch -h -d @0 {} +
  xorriso -as mkisofs -quiet -o "$dest/imprint.iso.tmp" \
    -iso-level 3 -r -J -joliet-long -V IMPRINT_BOOT \
    -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
    -b isolinux/isolinux.bin -c isolinux/boot.cat \
    -no-emul-boot -boot-load-size 4 -boot-info-table \
    -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot -isohybrid-gpt-basdat \
    "$stage"
  mv "$dest/imprint.iso.tmp" "$dest/imprint.iso"
}

# ---------------------------------------------------------------------------
publish() { # $1 = cache dir, $2... = files
  local d=$1; shift
  mkdir -p "$out"
  for f in "$@"; do cp "$d/$f" "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"; done
}

mkdir -p "$cache"
ikey=$(inputs_key initramfs)
idir=$cache/initramfs-$ikey
if [ ! -f "$idir/done" ]; then
  say "building the initramfs for kernel $kver (key $ikey)"
  rm -rf "$idir"; mkdir -p "$idir"
  build_initramfs "$idir"
  touch "$idir/done"
else
  say "initramfs up to date (key $ikey)"
fi
publish "$idir" vmlinuz initramfs.img
install -m 0644 "$here/boot.ipxe" "$out/boot.ipxe"

if [ "$what" = iso ]; then
  xkey=$(inputs_key iso)
  xdir=$cache/iso-$xkey
  if [ ! -f "$xdir/done" ]; then
    say "building the ISO (key $xkey)"
    rm -rf "$xdir"; mkdir -p "$xdir"
    cp "$idir/vmlinuz" "$idir/initramfs.img" "$xdir/"
    build_iso "$xdir"
    touch "$xdir/done"
  else
    say "ISO up to date (key $xkey)"
  fi
  publish "$xdir" imprint.iso
fi

# The same files under names that are their content (out/boot/, docs/boot.md), beside
# the newest ones' plain names above.
version=$("$agent" --version | cut -d' ' -f2)
published=("$out/vmlinuz" "$out/initramfs.img")
[ "$what" = iso ] && published+=("$out/imprint.iso")
bash "$here/publish.sh" "$out/boot" "$version" "$kver" "${published[@]}"

# Keep the cache small: the newest three entries of each kind.
for kind in initramfs iso; do
  { ls -dt "$cache/$kind-"* 2>/dev/null || true; } | tail -n +4 | xargs -r rm -rf
done

for f in vmlinuz initramfs.img boot.ipxe imprint.iso; do
  [ -f "$out/$f" ] && say "$(printf '%-16s %10s  (%s bytes)' "out/$f" "$(human "$out/$f")" "$(size_of "$out/$f")")"
done
exit 0
