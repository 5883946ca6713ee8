# imprint — see README.md. `make` builds out/imprint; `make test` runs every suite.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := . agent/native/env.sh &&
MUSL := target/x86_64-unknown-linux-musl

.PHONY: all deps agent test test-unit test-integration demo bench clean
all: agent

deps:
	@bash agent/native/deps.sh

agent: deps
	$(ENV) cargo build --release -p imprint
	@mkdir -p out && cp $(MUSL)/release/imprint out/imprint
	@file out/imprint | grep -q 'statically linked' || { echo "out/imprint is not statically linked"; exit 1; }
	@ls -l out/imprint

test: agent
	$(ENV) cargo test --workspace --release -- --test-threads=2

clean:
	rm -rf out target

# Debian 12 test images (rootfs tar + bootable disk) into target/images/<key>/; cached.
.PHONY: images
images:
	bash images/build.sh
