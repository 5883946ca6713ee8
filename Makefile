# imprint — see README.md. `make` builds out/imprint; `make test` runs every suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . agent/native/env.sh &&
ENV_AARCH64 := export IMPRINT_ARCH=aarch64 && . agent/native/env.sh &&
MUSL := target/x86_64-unknown-linux-musl
MUSL_AARCH64 := target/cross-aarch64/aarch64-unknown-linux-musl

.PHONY: all deps agent agent-aarch64 initramfs iso iso-aarch64 action test demo bench bench-boot images clean fuzz
all: agent initramfs iso action agent-aarch64 iso-aarch64

# IMPRINT_DEPS_DONE: set by tests/run-suites.sh for the builds it starts after `make test`
# has run this once (two makes side by side would otherwise run it twice at once).
deps:
	@[ -n "$${IMPRINT_DEPS_DONE:-}" ] || { bash agent/native/deps.sh && bash tests/gates/advisory-db.sh; }

agent: deps
	$(ENV) cargo build --release -p imprint
	@mkdir -p out && cp $(MUSL)/release/imprint out/imprint
	@file out/imprint | grep -q 'statically linked' || { echo "out/imprint is not statically linked"; exit 1; }
	@$(ENV) bash agent/native/licenses.sh out/LICENSES
	@ls -l out/imprint
	@# Man pages (out/man/*.1) and completions (out/completions/) from the clap definitions.
	@rm -rf out/man out/completions && out/imprint --quiet generate-docs out

# The same agent for arm64 servers, cross-built: out/aarch64/imprint (and its notices).
agent-aarch64: deps
	$(ENV_AARCH64) cargo build --release -p imprint
	@mkdir -p out/aarch64 && cp $(MUSL_AARCH64)/release/imprint out/aarch64/imprint
	@file out/aarch64/imprint | grep -q 'ARM aarch64.*statically linked' || { echo "out/aarch64/imprint is not a static aarch64 executable"; exit 1; }
	@$(ENV_AARCH64) bash agent/native/licenses.sh out/aarch64/LICENSES
	@ls -l out/aarch64/imprint

# Boot artifacts: out/vmlinuz, out/initramfs.img, out/boot.ipxe (initramfs/build.sh caches them).
initramfs: agent
	bash initramfs/build.sh initramfs

# The hybrid BIOS/UEFI, CD/USB image out/imprint.iso (includes the initramfs step).
iso: agent
	bash initramfs/build.sh iso

# The arm64 set (UEFI only): out/aarch64/{vmlinuz,initramfs.img,imprint.iso} from
# Debian's arm64 packages (docs/boot.md "arm64").
iso-aarch64: agent-aarch64
	bash initramfs/build.sh iso aarch64

# imprint as a Tinkerbell action: an OCI image layout holding only the agent, written
# without Docker (out/tinkerbell/, tag = imprint's version; docs/integrations/tinkerbell.md).
action: agent
	bash integrations/tinkerbell/build-action.sh out/imprint out/tinkerbell

# The builds of `all` happen inside, beside the test images' build (tests/run-suites.sh).
test: deps
	IMPRINT_DEPS_DONE=1 bash tests/run-suites.sh

# Initramfs size, QEMU start to final report with each phase's share, least RAM that works.
bench-boot: all
	$(ENV) cargo run -q -p imprint-tests --bin bench_boot

# Boot the agent from the ISO in QEMU with two disks, provision, show the reports.
demo: all
	$(ENV) cargo run -q -p imprint-tests --bin demo

clean:
	rm -rf out target

# Debian 12 test images (rootfs tar + bootable disk) into target/images/<key>/; cached.
.PHONY: images
images:
	bash images/build.sh

# Fuzz every cargo-fuzz target of agent/fuzz for FUZZ_SECONDS each (gnu target, libFuzzer;
# stable toolchain with RUSTC_BOOTSTRAP). Crashes land in agent/fuzz/artifacts/<target>/.
# agent/fuzz/seeds/<target>/ (committed, where present) seeds the corpus: archives GNU tar
# makes, a tang advertisement and clevis JWEs the fuzzer could not forge, a GPT, an ISO
# customization area, swtpm's responses to a whole tpm2 seal and unseal. An input that
# takes over 10 s counts as a hang (a crash).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := document gpt iso_area cmdline inventory qcow2_header tar tang_adv zstd_frames \
  tpm2_responses signatures whiteouts oci_manifests caibx
fuzz: deps
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd agent/fuzz && for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p corpus/$$t; seeds=; [ -d seeds/$$t ] && seeds=seeds/$$t; \
	  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=../../target/fuzz cargo fuzz run --target x86_64-unknown-linux-gnu $$t corpus/$$t $$seeds -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 || exit 1; \
	done

# Image-writer benchmark against curl|zstd|dd and qemu-img convert (needs root and
# loop devices); builds its test images into target/bench/, results into out/bench/.
# The agent is built a second time with the feature bench-unverified (no hashing of the
# served bytes, so the bench measures what inline sha256 costs), in a target directory
# of its own so it never lands in out/. Then the boot bench (initramfs size,
# boot-to-report phases, least RAM).
BENCH_UNVERIFIED = $${CARGO_TARGET_DIR:-target}/bench-unverified
bench: all
	$(ENV) cargo build --release -p imprint-tests --bin imprint-bench
	$(ENV) CARGO_TARGET_DIR=$(BENCH_UNVERIFIED) cargo build --release -p imprint --features bench-unverified
	$${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/imprint-bench \
	  --imprint out/imprint --unverified $(BENCH_UNVERIFIED)/x86_64-unknown-linux-musl/release/imprint \
	  --cache $${CARGO_TARGET_DIR:-target}/bench --out out/bench
	@# 64 agents through lookup against one receiver: wall time and the receiver's peak memory.
	$(ENV) cargo test -q -p imprint-tests --test fleet -- --nocapture 2>&1 | grep -E '^fleet:|test result'
	$(MAKE) bench-boot
