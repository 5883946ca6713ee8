# imprint — see README.md. `make` builds out/imprint; `make test` runs every suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . agent/native/env.sh &&
MUSL := target/x86_64-unknown-linux-musl

.PHONY: all deps agent initramfs iso test test-unit test-integration demo bench clean
all: agent initramfs iso

deps:
	@bash agent/native/deps.sh

agent: deps
	$(ENV) cargo build --release -p imprint
	@mkdir -p out && cp $(MUSL)/release/imprint out/imprint
	@file out/imprint | grep -q 'statically linked' || { echo "out/imprint is not statically linked"; exit 1; }
	@ls -l out/imprint

# Boot artifacts: out/vmlinuz, out/initramfs.img, out/boot.ipxe (initramfs/build.sh caches them).
initramfs: agent
	bash initramfs/build.sh initramfs

# The hybrid BIOS/UEFI, CD/USB image out/imprint.iso (includes the initramfs step).
iso: agent
	bash initramfs/build.sh iso

test: agent
	bash tests/run-suites.sh

clean:
	rm -rf out target

# Debian 12 test images (rootfs tar + bootable disk) into target/images/<key>/; cached.
.PHONY: images
images:
	bash images/build.sh

# Image-writer benchmark against curl|zstd|dd and qemu-img convert (needs root and
# loop devices); builds its test images into target/bench/, results into out/bench/.
bench: agent
	$(ENV) cargo build --release -p imprint-tests --bin imprint-bench
	$${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/imprint-bench \
	  --imprint out/imprint --cache $${CARGO_TARGET_DIR:-target}/bench --out out/bench
