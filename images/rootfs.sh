#!/usr/bin/env bash
# Builds the Debian 12 root filesystem the end-to-end tests deploy (`format: rootfs`).
#
#   [IMPRINT_IMAGE_ARCH=x86_64|aarch64] images/rootfs.sh OUTDIR
#
# Writes OUTDIR/debian-12-rootfs.tar.zst (numeric owners, xattrs, ACLs),
# OUTDIR/debian-12-rootfs.tar.zst.sha512 and .sha256 (hex only, of the .zst file),
# OUTDIR/debian-12-rootfs.tar.size (bytes of the tar), OUTDIR/manifest.json and
# OUTDIR/rootfs.key; for aarch64 the names are debian-12-arm64-rootfs.*. A rerun is a
# no-op while rootfs.key matches this script, packages.txt and the architecture. Root
# only (mmdebstrap in root mode, chroot); a foreign architecture runs its maintainer
# scripts through qemu-user-static and binfmt_misc. Test image: root's password is
# `imprint` so a tester can log in on the serial console.
set -euo pipefail

# The body is one function, read whole before it runs: editing this file during a
# build cannot derail the build.
main() {

here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
# tag: the architecture's mark in file names (none for x86_64, as before aarch64 came).
case ${IMPRINT_IMAGE_ARCH:-x86_64} in
  x86_64 | amd64) arch=x86_64 deb_arch=amd64 tag= ;;
  aarch64 | arm64) arch=aarch64 deb_arch=arm64 tag=-arm64 ;;
  *) echo "rootfs.sh: IMPRINT_IMAGE_ARCH=$IMPRINT_IMAGE_ARCH: x86_64 or aarch64" >&2; exit 2 ;;
esac
name=debian-12$tag-rootfs.tar.zst
size_name=debian-12$tag-rootfs.tar.size
packages_file=$here/packages.txt

key=$({ cat "$0" "$packages_file"; echo "$arch"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/rootfs.key" ] && [ "$(cat "$out/rootfs.key")" = "$key" ] \
  && [ -f "$out/$name" ] && [ -f "$out/$name.sha512" ] && [ -f "$out/$name.sha256" ] \
  && [ -f "$out/$size_name" ] && [ -f "$out/manifest.json" ]; then
  echo "rootfs: up to date in $out"
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { echo "rootfs.sh: run as root (mmdebstrap root mode and chroot)" >&2; exit 1; }

# Another architecture's binaries run through qemu-user-static, registered with
# binfmt_misc by binfmt-support (flag F: the interpreter works inside the chroot too);
# mmdebstrap checks that with arch-test. Set up here if the host has not done it yet.
if [ "$deb_arch" != "$(dpkg --print-architecture)" ]; then
  for tool in qemu-$arch-static update-binfmts arch-test; do
    command -v "$tool" > /dev/null || {
      echo "rootfs.sh: $deb_arch on $(dpkg --print-architecture) needs qemu-user-static, binfmt-support and arch-test ($tool is missing)" >&2
      exit 1
    }
  done
  binfmt=/proc/sys/fs/binfmt_misc
  [ -e "$binfmt/status" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
  grep -qx enabled "$binfmt/qemu-$arch" 2> /dev/null || update-binfmts --enable "qemu-$arch"
  arch-test "$deb_arch" > /dev/null \
    || { echo "rootfs.sh: $deb_arch binaries do not run here, even with qemu-$arch-static" >&2; exit 1; }
fi

mkdir -p "$out"
rm -f "$out/rootfs.key"
work=$(mktemp -d "${TMPDIR:-/tmp}/imprint-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM
root=$work/root
start=$(date +%s)

# One package a line; `name [arch]` only on that Debian architecture.
packages=$(awk -v a="$deb_arch" '{ sub(/#.*/, "") } NF == 1 || $2 == "[" a "]" { print $1 }' \
  "$packages_file" | paste -sd, -)

# Debian's kernel postinst makes /vmlinuz and /initrd.img symlinks; we want them in
# /boot so a separate /boot (md RAID1 in the mirrored layout) carries them too.
# The initramfs is built once, when every package is in: the kernel's postinst and the
# trigger that mdadm, lvm2, cryptsetup and clevis fire would each build it, minutes
# apiece under qemu-user, so update-initramfs is diverted to a no-op until then.
# Documentation, man pages and translations are left out to keep the image small.
mmdebstrap --variant=minbase --architectures="$deb_arch" --include="$packages" \
  --setup-hook='mkdir -p "$1/etc" && printf "do_symlinks = yes\nlink_in_boot = yes\n" > "$1/etc/kernel-img.conf"' \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs' \
  --essential-hook='printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"' \
  --customize-hook='rm "$1/usr/sbin/update-initramfs"' \
  --customize-hook='chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs' \
  --customize-hook='chroot "$1" update-initramfs -c -k all' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --aptopt='Acquire::Retries "3"' \
  bookworm "$root" \
  "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main"

# cloud-init: look only at local seeds (the agent's configdrive), never wait for a
# metadata service on the network.
mkdir -p "$root/etc/cloud/cloud.cfg.d"
# Enable cloud-init without ds-identify's search at boot: under an emulated CPU that
# shell search can outlast systemd's generator timeout, which then leaves cloud-init
# disabled for the boot. The datasource is still found (NoCloud, else None) by
# cloud-init itself.
printf 'policy: enabled\n' > "$root/etc/cloud/ds-identify.cfg"
# Even in mode `enabled` ds-identify first probes every block device and DMI field;
# on a deployed tang+TPM stack (md, LUKS, seven LVs) under TCG on a loaded host that
# took 99 s, the generator was killed at systemd's 90 s limit and cloud-init stayed
# off for the boot. So cloud-init.target is also wanted statically: it runs whatever
# the generator manages (and the datasource list below decides what it reads).
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /lib/systemd/system/cloud-init.target \
  "$root/etc/systemd/system/multi-user.target.wants/cloud-init.target"
# systemd runs every generator within one 90 s budget, and a generator still running
# then is killed with the rest unfinished: a TCG guest starved by its host (rcu stalls,
# 30 s pauses) once lost systemd-fstab-generator that way and came up with `/` read-only
# and nothing else mounted. The generators this image does not need are masked, so the
# budget goes to fstab, cryptsetup and the like: cloud-init's (its target is wanted
# statically, above) and gpt-auto's (every mount is in fstab).
mkdir -p "$root/etc/systemd/system-generators"
for g in cloud-init-generator systemd-gpt-auto-generator; do
  ln -sf /dev/null "$root/etc/systemd/system-generators/$g"
done
# A starved TCG guest (the four-disk degraded boot beside two other lanes) has seen
# systemd give up on /boot's md device after the default 90 s and boot into emergency
# mode while the array was still assembling. Test machines wait longer for devices
# and units; a real one that never finds a device still says so, later.
mkdir -p "$root/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultTimeoutStartSec=300s\nDefaultDeviceTimeoutSec=300s\n' > "$root/etc/systemd/system.conf.d/90-imprint-test.conf"
cat > "$root/etc/cloud/cloud.cfg.d/90-imprint-datasource.cfg" <<'EOF'
# Written by imprint's images/rootfs.sh: the configdrive is the only source.
datasource_list: [ NoCloud, ConfigDrive, None ]
# No sshd in the image: no host keys to make. C.UTF-8 needs no locale-gen.
ssh_genkeytypes: []
locale: C.UTF-8
EOF

# GRUB defaults for whoever runs grub-mkconfig on the deployed system (the agent's
# finalize step): serial console, short timeout. On aarch64 the serial port is QEMU
# virt's PL011 (ttyAMA0), which the firmware's own console already drives.
case $arch in
  x86_64) console="console=tty0 console=ttyS0,115200" ;;
  aarch64) console="console=ttyAMA0,115200n8" ;;
esac
cp "$root/usr/share/grub/default/grub" "$root/etc/default/grub"
sed -i \
  -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=1/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT=""/' \
  -e "s/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX=\"$console\"/" \
  "$root/etc/default/grub"
case $arch in
  x86_64) printf '%s\n' 'GRUB_TERMINAL="console serial"' \
    'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"' >> "$root/etc/default/grub" ;;
  aarch64) printf '%s\n' 'GRUB_TERMINAL=console' >> "$root/etc/default/grub" ;;
esac

# ifupdown reads what cloud-init renders into interfaces.d.
cat > "$root/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
mkdir -p "$root/etc/network/interfaces.d"

echo debian > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# The deployment writes the real fstab (it knows the layout).
printf '# Written at deployment.\n' > "$root/etc/fstab"
# Test image only: a known root password for a login on the serial console.
echo 'root:imprint' | chroot "$root" chpasswd
# Each deployed machine gets its own identity at first boot.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
  "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
rm -f "$root/etc/resolv.conf"

# Manifest: every installed package with its version and installed size.
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package}\t${Version}\t${Installed-Size}\n' \
  > "$work/packages.tsv"

tar --numeric-owner --xattrs --xattrs-include='*' --acls --sort=name \
  -C "$root" -cf "$work/rootfs.tar" .
tar_size=$(stat -c %s "$work/rootfs.tar")
zstd -q -T0 -12 --rm -o "$work/$name" "$work/rootfs.tar"
sha512=$(sha512sum "$work/$name" | cut -d' ' -f1)
sha256=$(sha256sum "$work/$name" | cut -d' ' -f1)
printf '%s\n' "$sha512" > "$work/$name.sha512"
printf '%s\n' "$sha256" > "$work/$name.sha256"
printf '%s\n' "$tar_size" > "$work/$size_name"
elapsed=$(($(date +%s) - start))

python3 - "$work/packages.tsv" "$work/$name" "$sha512" "$sha256" "$tar_size" "$key" "$elapsed" \
  "$arch" > "$work/manifest.json" <<'EOF'
import json, os, sys
tsv, image, sha512, sha256, tar_size, key, elapsed, arch = sys.argv[1:]
packages = []
for line in open(tsv):
    name, version, size = line.rstrip("\n").split("\t")
    packages.append({"name": name, "version": version, "installed_size_kib": int(size or 0)})
json.dump({
    "image": os.path.basename(image),
    "format": "rootfs",
    "architecture": arch,
    "compression": "zstd",
    "size": os.path.getsize(image),
    "tar_size": int(tar_size),
    "sha512": sha512,
    "sha256": sha256,
    "key": key,
    "build_seconds": int(elapsed),
    "packages": packages,
}, sys.stdout, indent=1)
print()
EOF

mv "$work/$name" "$work/$name.sha512" "$work/$name.sha256" "$work/$size_name" \
  "$work/manifest.json" "$out/"
echo "$key" > "$out/rootfs.key"
echo "rootfs: $out/$name ($(stat -c %s "$out/$name") bytes, ${elapsed}s)"
}

main "$@"
