#!/usr/bin/env bash
# Installs what building and testing imprint needs on Debian 12, idempotently.
# A stamp keyed by this file's content makes the second run a no-op.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stamp_dir=${IMPRINT_CACHE:-$here/../../target/cache}
mkdir -p "$stamp_dir"
key=$(sha256sum "$0" | cut -c1-16)
stamp=$stamp_dir/deps-$key.stamp

# Foreign binaries (the aarch64 agent's tests, the arm64 ramdisk's tools, the arm64
# test image's maintainer scripts) run through qemu-user's binfmt handler. The kernel
# forgets the registration at every boot, so this runs every time, stamp or not.
binfmt() {
  [ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || return 0
  [ -f /proc/sys/fs/binfmt_misc/status ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  [ -f /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
}
if [ -f "$stamp" ]; then binfmt; exit 0; fi

packages=(
  # static build of the agent (musl + C libraries from Debian sources)
  build-essential musl-tools musl-dev pkg-config autoconf automake libtool autopoint
  gettext cmake file xz-utils dpkg-dev clang libclang-dev
  # the aarch64 agent, cross-built (musl and the C libraries from Debian's sources) and
  # tested under user-mode emulation; arm64 machines under QEMU with AAVMF
  gcc-aarch64-linux-gnu linux-libc-dev-arm64-cross qemu-user-static binfmt-support
  qemu-system-arm qemu-efi-aarch64
  # mmdebstrap asks arch-test whether a foreign architecture runs (the arm64 test image)
  arch-test
  # independent checkers and the tools the ramdisk carries
  gdisk fdisk util-linux e2fsprogs xfsprogs dosfstools mtools cryptsetup-bin mdadm lvm2
  zstd xz-utils gzip curl socat cpio kmod busybox-static kexec-tools
  cloud-init
  # boot artifacts and the QEMU bench
  linux-image-amd64 qemu-system-x86 qemu-utils/bookworm ovmf xorriso grub-pc-bin grub-efi-amd64-bin
  grub-common isolinux syslinux-common ipxe-qemu mmdebstrap
  # tang / TPM2 / clevis interoperability
  tang jose clevis clevis-tpm2 swtpm swtpm-tools tpm2-tools
  # signatures made by the real signers (trust root, signed documents and images)
  minisign gnupg sqv
  # OCI registries: the CNCF distribution server, a real client to push with, htpasswd,
  # umoci (the reference unpacker container-image rootfs deployments are compared with)
  docker-registry skopeo apache2-utils umoci
  # integration recipes: Ruby renders the Foreman templates with its own ERB
  ruby
  # IPv6 provisioning networks: dnsmasq for RA (RDNSS, DNSSL) and stateful DHCPv6 in a namespace
  dnsmasq-base
  # casync chunk stores: the real casync makes the indexes and stores the tests read
  casync
  # make bench serves chunk stores and images as a fleet would: nginx (keep-alive, sendfile)
  nginx-light
  # make fuzz: the gnu build of the library links these dynamically; openssl makes test certificates
  libcryptsetup-dev libblkid-dev openssl
)

if [ -f /etc/apt/sources.list.d/debian.sources ] && [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > /etc/apt/sources.list.d/debian-src.sources
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# cloud-init and tang must not start services on the build machine.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
apt-get install -y -q --no-install-recommends --allow-downgrades "${packages[@]}"
rm -f /usr/sbin/policy-rc.d
rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl
binfmt
# cargo-deny for the deny gate of `make test` (tests/gates/run.sh), pinned: a new release
# may add checks or change deny.toml's format, which is a deliberate update.
deny_version=0.20.2
if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $deny_version" ]; then
  cargo install --locked cargo-deny --version "$deny_version"
fi
touch "$stamp"
