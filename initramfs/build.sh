#!/usr/bin/env bash
# Builds the boot artifacts from Debian's kernel, the static agent and a few tools:
#   initramfs/build.sh initramfs [ARCH]  → vmlinuz, initramfs.img (and out/boot.ipxe)
#   initramfs/build.sh iso [ARCH]        → the above + imprint.iso (CD/USB)
# and each time boot/ beside them, the same files named by their SHA-256 (publish.sh).
# ARCH is x86_64 (default: this machine's kernel and tools, the agent out/imprint, files
# in out/, a hybrid BIOS/UEFI ISO) or aarch64 (Debian's arm64 packages extracted into a
# cached sysroot, the agent out/aarch64/imprint, files in out/aarch64/, a UEFI-only ISO).
# Each artifact is cached under target/initramfs-cache/ by a key over every input
# (kernel version, package versions, the agent's hash, this directory's files), so a
# second run with nothing changed only copies. Must run as root (device nodes).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=$root/target/initramfs-cache
what=${1:-initramfs}
arch=${2:-x86_64}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

say() { echo "initramfs: $*"; }
die() { echo "initramfs: error: $*" >&2; exit 1; }

case $what in initramfs|iso) ;; *) die "usage: build.sh initramfs|iso [x86_64|aarch64]" ;; esac

# Per architecture: where the files go, where the kernel and tools come from (sysroot:
# empty for this machine), the `file` name of its ELF machine, the console.
case $arch in
  x86_64)
    out=$root/out prefix= sysroot= triplet=x86_64-linux-gnu elf="x86-64" run=()
    console="console=tty0 console=ttyS0,115200n8" ;;
  aarch64)
    out=$root/out/aarch64 prefix=aarch64- triplet=aarch64-linux-gnu elf="ARM aarch64"
    run=(qemu-aarch64-static)   # the agent's --version and busybox's applet list
    console="console=tty0 console=ttyAMA0,115200n8" ;;
  *) die "unknown architecture '$arch': x86_64 or aarch64" ;;
esac

agent=$out/imprint
[ -x "$agent" ] || die "$agent is missing: run 'make agent' first (make agent-aarch64 for aarch64)"
file -b "$agent" | grep -q "$elf.*static\(ally\|-pie\) linked" ||
  die "$agent is not a statically linked $elf executable: $(file -b "$agent")"

# Tools the agent runs, by the name it calls them. Symlinks are kept as symlinks.
tools=(mke2fs mkfs.ext4 e2fsck resize2fs mkfs.xfs xfs_growfs mkfs.fat mkfs.vfat mkswap
       mdadm lvm sgdisk kexec kmod)
lvm_links=(pvcreate pvremove pvs pvscan vgcreate vgchange vgremove vgs vgscan
           lvcreate lvchange lvremove lvs lvscan)
kmod_links=(modprobe insmod rmmod lsmod modinfo depmod)
tool_pkgs=(e2fsprogs xfsprogs dosfstools util-linux mdadm lvm2 gdisk kexec-tools kmod
           busybox-static libc6)

# ---------------------------------------------------------------------------
# aarch64: Debian's arm64 packages, extracted (no maintainer scripts run, so nothing
# is emulated) into target/initramfs-cache/aarch64-sysroot-<key>/root. The key covers
# the packages, the sources and the extraction itself; IMPRINT_REFRESH_SYSROOT=1
# extracts again to take in Debian's updates. packages.txt there lists the versions
# extracted and is part of the ramdisk's and the ISO's keys, so a new kernel or tool
# rebuilds them.
sysroot_pkgs=("${tool_pkgs[@]}" linux-image-arm64 grub-efi-arm64-bin)
debian=("deb http://deb.debian.org/debian bookworm main"
        "deb http://deb.debian.org/debian bookworm-updates main"
        "deb http://deb.debian.org/debian-security bookworm-security main")

extract_sysroot() { # $1 = dir to fill: root/, packages.txt
  local d=$1 deb
  mmdebstrap --quiet --variant=extract --architectures=arm64 --skip=cleanup/apt/cache \
    --include="$(IFS=,; echo "${sysroot_pkgs[*]}")" --aptopt='Acquire::Retries "3"' \
    bookworm "$d/root" "${debian[@]}"
  for deb in "$d"/root/var/cache/apt/archives/*.deb; do
    dpkg-deb --show --showformat='${Package}=${Version}\n' "$deb"
  done | sort > "$d/packages.txt"
  rm -f "$d"/root/var/cache/apt/archives/*.deb
  # modules.dep comes from the kernel package's postinst, which extraction skips.
  depmod -b "$d/root" "$(newest_kernel "$d/root")"
}

# The newest kernel under $1 (a root directory, empty for this machine): the one with
# modules.dep when $2 says so.
newest_kernel() {
  local k v=
  for k in $(ls "$1"/boot/vmlinuz-* 2>/dev/null | sed 's|.*/boot/vmlinuz-||' | sort -V); do
    [ -z "${2:-}" ] || [ -f "$1/lib/modules/$k/modules.dep" ] && v=$k
  done
  echo "$v"
}

if [ "$arch" = aarch64 ]; then
  for c in mmdebstrap readelf qemu-aarch64-static grub-mkimage; do
    command -v "$c" >/dev/null || die "$c is missing: install its package (make deps)"
  done
  skey=$({ printf '%s\n' "${sysroot_pkgs[@]}" "${debian[@]}"; declare -f extract_sysroot; } |
    sha256sum | cut -c1-20)
  sdir=$cache/aarch64-sysroot-$skey
  if [ ! -f "$sdir/done" ] || [ -n "${IMPRINT_REFRESH_SYSROOT:-}" ]; then
    say "extracting Debian's arm64 packages (key $skey)"
    rm -rf "$sdir"; mkdir -p "$sdir"
    extract_sysroot "$sdir"
    touch "$sdir/done"
  fi
  # Only the sysroot in use is kept (one is ~650 MiB).
  for d in "$cache"/aarch64-sysroot-*; do [ "$d" = "$sdir" ] || rm -rf "$d"; done
  sysroot=$sdir/root
  kver=$(newest_kernel "$sysroot" with-modules)
  [ -n "$kver" ] || die "no kernel with modules in $sysroot"
  # GRUB's arm64 `linux` and iPXE start the kernel through its EFI stub. Debian's arm64
  # vmlinuz is the uncompressed Image (a PE file, "MZ", with the arm64 magic "ARMd" at
  # 0x38), so it is used as it is; a compressed one would boot from neither.
  [ "$(head -c 2 "$sysroot/boot/vmlinuz-$kver")" = MZ ] &&
    [ "$(dd if="$sysroot/boot/vmlinuz-$kver" bs=1 skip=56 count=4 status=none)" = ARMd ] ||
    die "$sysroot/boot/vmlinuz-$kver is not an arm64 Image with an EFI stub"
  iso_pkgs=(grub-common xorriso mtools dosfstools)   # this machine's; the rest is the sysroot's
else
  # The newest installed kernel that has its modules (IMPRINT_KVER overrides).
  kver=${IMPRINT_KVER:-$(newest_kernel "" with-modules)}
  [ -n "$kver" ] || die "no kernel with modules in /boot and /lib/modules: install linux-image-amd64 (make deps)"
  tool_pkgs+=("linux-image-$kver")
  iso_pkgs=(grub-efi-amd64-bin grub-common isolinux syslinux-common xorriso mtools)
fi

# Trust keys baked into the ramdisk's /etc/imprint/trust.d (docs/trust.md): the key
# files (*.pub, *.asc, *.pgp, *.gpg) of IMPRINT_TRUST_DIR, when it is set.
trust_dir=${IMPRINT_TRUST_DIR:-}
[ -z "$trust_dir" ] || [ -d "$trust_dir" ] || die "IMPRINT_TRUST_DIR=$trust_dir is not a directory"
trust_keys() { find . -maxdepth 1 -type f \( -name '*.pub' -o -name '*.asc' -o -name '*.pgp' -o -name '*.gpg' \) | LC_ALL=C sort; }

pkg_versions() { dpkg-query -W -f='${Package}=${Version}\n' "$@" 2>/dev/null | sort; }
inputs_key() {
  {
    echo "arch=$arch kernel=$kver"
    if [ -n "$sysroot" ]; then cat "$sdir/packages.txt"; else pkg_versions "${tool_pkgs[@]}"; fi
    sha256sum "$agent" | cut -d' ' -f1
    (cd "$here" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    if [ -n "$trust_dir" ]; then (cd "$trust_dir" && trust_keys | xargs -r sha256sum); fi
    if [ "$1" = iso ]; then pkg_versions "${iso_pkgs[@]}"; fi
  } | sha256sum | cut -c1-20
}

size_of() { stat -c %s "$1"; }
human() { numfmt --to=iec-i --suffix=B "$(size_of "$1")"; }

# Paths below are inside the root the files come from ($sysroot, or / for this machine).
# resolve: the file a path names, following symlinks without leaving that root.
resolve() {
  local p=$1 l n=0
  while [ -L "$sysroot$p" ]; do
    l=$(readlink "$sysroot$p")
    case $l in /*) p=$l ;; *) p=$(dirname "$p")/$l ;; esac
    n=$((n + 1)); [ $n -lt 40 ] || die "too many symlinks at $1"
  done
  realpath -m -s "$p"
}
# find_in NAME DIR...: the first DIR holding NAME.
find_in() {
  local name=$1 d; shift
  for d in "$@"; do [ -e "$sysroot$d/$name" ] && { echo "$d/$name"; return 0; }; done
  return 1
}
# Appends to libs the shared libraries the ELF files $@ need, recursively (readelf -d
# NEEDED, looked up where the loader looks), and their program interpreter (the loader,
# which libc also names as NEEDED: it is there once, at its canonical path).
need_libs() {
  local -A seen=() ; local queue=("$@") f n p
  while [ ${#queue[@]} -gt 0 ]; do
    f=${queue[0]}; queue=("${queue[@]:1}")
    p=$(readelf -l "$sysroot$f" 2>/dev/null | sed -n 's/.*program interpreter: \(.*\)]$/\1/p')
    if [ -n "$p" ] && [ -z "${seen[${p##*/}]:-}" ]; then seen[${p##*/}]=1; libs+=("$p"); fi
    for n in $(readelf -d "$sysroot$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
      [ -z "${seen[$n]:-}" ] || continue
      seen[$n]=1
      p=$(find_in "$n" "/lib/$triplet" "/usr/lib/$triplet" /lib /usr/lib) ||
        die "$f needs $n, which is not in ${sysroot:-/}"
      libs+=("$p"); queue+=("$p")
    done
  done
}

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
  install -m 0755 "$sysroot/bin/busybox" "$stage/bin/busybox"
  local applet
  for applet in $("${run[@]}" "$sysroot/bin/busybox" --list); do
    case $applet in busybox|init|linuxrc) continue ;; esac
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
  done

  # External tools and the shared libraries they need, with the dynamic loader.
  local t p real elves=() libs=()
  for t in "${tools[@]}"; do
    p=$(find_in "$t" /usr/sbin /usr/bin /sbin /bin) || die "tool $t not found in ${sysroot:-/}: install its package (make deps)"
    real=$(resolve "$p")
    if [ "$(basename "$real")" != "$t" ] && printf '%s\n' "${tools[@]}" | grep -qx "$(basename "$real")"; then
      ln -sf "$(basename "$real")" "$stage/sbin/$t"
    else
      install -m 0755 "$sysroot$real" "$stage/sbin/$t"
      elves+=("$real")
    fi
  done
  for t in "${lvm_links[@]}"; do ln -s lvm "$stage/sbin/$t"; done
  for t in "${kmod_links[@]}"; do ln -s kmod "$stage/sbin/$t"; done
  need_libs "${elves[@]}"
  # glibc loads libgcc_s at run time for thread cancellation.
  for p in "/lib/$triplet/libgcc_s.so.1"; do [ -f "$sysroot$p" ] && libs+=("$p"); done
  local l
  for l in $(printf '%s\n' "${libs[@]}" | sort -u); do
    mkdir -p "$stage$(dirname "$l")"
    cp "$sysroot$(resolve "$l")" "$stage$l"
  done

  # Configuration the tools read.
  cp "$sysroot/etc/mke2fs.conf" "$stage/etc/" 2>/dev/null || true
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
  local name missing=() ko f mp=(modprobe -S "$kver")
  [ -z "$sysroot" ] || mp+=(-d "$sysroot")
  local mods=()
  for name in $(sed 's/#.*//' "$here/modules.list"); do
    if ! "${mp[@]}" --show-depends "$name" >/dev/null 2>&1; then missing+=("$name"); continue; fi
    mods+=($("${mp[@]}" --show-depends "$name" 2>/dev/null |
      awk -v r="$sysroot" '$1=="insmod"{print substr($2, length(r) + 1)}'))
  done
  [ ${#missing[@]} -eq 0 ] || say "not in kernel $kver (skipped): ${missing[*]}"
  for ko in $(printf '%s\n' "${mods[@]}" | sort -u); do
    mkdir -p "$stage$(dirname "$ko")"
    cp "$sysroot$ko" "$stage$ko"
  done
  for f in modules.order modules.builtin modules.builtin.modinfo; do
    [ -f "$sysroot/lib/modules/$kver/$f" ] && cp "$sysroot/lib/modules/$kver/$f" "$stage/lib/modules/$kver/"
  done
  depmod -b "$stage" "$kver"

  # Firmware the chosen modules ask for, where a Debian package installed it on this
  # machine (firmware files are the same for every architecture).
  local fw nfw=0 nmiss=0
  for ko in $(printf '%s\n' "${mods[@]}" | sort -u); do
    for fw in $(modinfo -F firmware "$sysroot$ko" 2>/dev/null); do
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
  cp "$sysroot/boot/vmlinuz-$kver" "$dest/vmlinuz"
}

# ---------------------------------------------------------------------------
build_iso() { # $1 = cache dir holding vmlinuz + initramfs.img; writes imprint.iso there
  local dest=$1 stage work id
  stage=$(mktemp -d "$root/target/iso-stage.XXXXXX")
  work=$(mktemp -d "$root/target/iso-work.XXXXXX")
  trap 'rm -rf "$stage" "$work"' RETURN
  id=$(basename "$dest")
  mkdir -p "$stage"/{boot/grub,imprint}
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

  local kargs="$console imprint.iso=1"

  # BIOS (x86 only): isolinux (El Torito) and the isohybrid MBR for USB sticks.
  if [ "$arch" = x86_64 ]; then
    mkdir -p "$stage/isolinux"
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
  fi

  # UEFI: a GRUB image with its config built in, on a small FAT image (El Torito EFI
  # entry for CDs, GPT partition for USB sticks). On arm64 GRUB writes to the firmware's
  # console (the serial port on QEMU's virt and on servers); its `serial --unit=0` would
  # fail there ("serial port `com0' isn't found").
  {
    if [ "$arch" = x86_64 ]; then
      printf 'serial --unit=0 --speed=115200\nterminal_output serial console\n'
    fi
    cat <<EOF
echo "imprint: loading kernel and initramfs"
search --no-floppy --set=root --file /imprint/id-$id
linux /boot/vmlinuz $kargs
initrd /boot/initramfs.img
boot
EOF
  } > "$work/grub.cfg"
  local format loader moddir=() mods
  if [ "$arch" = x86_64 ]; then
    format=x86_64-efi loader=BOOTX64.EFI
    mods=(part_gpt part_msdos iso9660 fat search search_fs_file linux echo serial terminal
          efi_gop efi_uga normal configfile)
  else
    # GRUB's arm64 modules from the sysroot (grub-efi-arm64-bin), packed by this machine's
    # grub-mkimage (grub-common, the same GRUB version).
    format=arm64-efi loader=BOOTAA64.EFI moddir=(-d "$sysroot/usr/lib/grub/arm64-efi")
    mods=(part_gpt part_msdos iso9660 fat search search_fs_file linux echo terminal
          efi_gop normal configfile)
  fi
  grub-mkimage -O "$format" "${moddir[@]}" -o "$work/$loader" -p /EFI/BOOT -c "$work/grub.cfg" \
    "${mods[@]}"
  local kib=$(( ($(size_of "$work/$loader") / 1024) + 256 ))
  mkfs.vfat -C -n IMPRINT_EFI "$stage/boot/grub/efi.img" "$kib" >/dev/null
  mmd -i "$stage/boot/grub/efi.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$stage/boot/grub/efi.img" "$work/$loader" "::/EFI/BOOT/$loader"

  find "$stage" -exec touch -h -d @0 {} +
  local boot=()
  if [ "$arch" = x86_64 ]; then
    boot=(-isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin
          -b isolinux/isolinux.bin -c isolinux/boot.cat
          -no-emul-boot -boot-load-size 4 -boot-info-table
          -eltorito-alt-boot -e boot/grub/efi.img -no-emul-boot -isohybrid-gpt-basdat)
  else
    # The EFI entry alone; for USB sticks the same FAT image is the GPT's EFI system
    # partition (-isohybrid-gpt-basdat needs the isohybrid MBR, which is BIOS code).
    boot=(-c boot/boot.cat -e boot/grub/efi.img -no-emul-boot -efi-boot-part --efi-boot-image)
  fi
  xorriso -as mkisofs -quiet -o "$dest/imprint.iso.tmp" \
    -iso-level 3 -r -J -joliet-long -V IMPRINT_BOOT "${boot[@]}" "$stage"
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
idir=$cache/${prefix}initramfs-$ikey
if [ ! -f "$idir/done" ]; then
  say "building the $arch initramfs for kernel $kver (key $ikey)"
  rm -rf "$idir"; mkdir -p "$idir"
  build_initramfs "$idir"
  touch "$idir/done"
else
  say "$arch initramfs up to date (key $ikey)"
fi
publish "$idir" vmlinuz initramfs.img
# One script for every architecture (it picks by iPXE's ${buildarch}), beside the x86 files.
install -m 0644 "$here/boot.ipxe" "$root/out/boot.ipxe"

if [ "$what" = iso ]; then
  xkey=$(inputs_key iso)
  xdir=$cache/${prefix}iso-$xkey
  if [ ! -f "$xdir/done" ]; then
    say "building the $arch ISO (key $xkey)"
    rm -rf "$xdir"; mkdir -p "$xdir"
    cp "$idir/vmlinuz" "$idir/initramfs.img" "$xdir/"
    build_iso "$xdir"
    touch "$xdir/done"
  else
    say "$arch ISO up to date (key $xkey)"
  fi
  publish "$xdir" imprint.iso
fi

# The same files under names that are their content (boot/ beside them, docs/boot.md),
# beside the newest ones' plain names above.
version=$("${run[@]}" "$agent" --version | cut -d' ' -f2)
published=("$out/vmlinuz" "$out/initramfs.img")
[ "$what" = iso ] && published+=("$out/imprint.iso")
bash "$here/publish.sh" --console "$console" "$out/boot" "$version" "$kver" "${published[@]}"

# Keep the cache small: the newest three entries of each kind.
for kind in initramfs iso; do
  { ls -dt "$cache/$prefix$kind-"* 2>/dev/null || true; } | tail -n +4 | xargs -r rm -rf
done

for f in vmlinuz initramfs.img boot.ipxe imprint.iso; do
  [ -f "$out/$f" ] && say "$(printf '%-26s %10s  (%s bytes)' "${out#"$root"/}/$f" "$(human "$out/$f")" "$(size_of "$out/$f")")"
done
exit 0
