# Sourced (by the Makefile and by hand): builds the static C libraries if their
# cache is missing, and exports what cargo needs for the static musl build.
#   . agent/native/env.sh && cargo build --release
_imprint_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_imprint_key=$(sha256sum "$_imprint_root/agent/native/build-static-libs.sh" | cut -c1-16)
_imprint_native=${CARGO_TARGET_DIR:-$_imprint_root/target}/native/$_imprint_key
if [ ! -f "$_imprint_native/done" ]; then
  bash "$_imprint_root/agent/native/build-static-libs.sh" "$_imprint_native" || return 1 2>/dev/null || exit 1
fi
_p=$_imprint_native/prefix
export CARGO_BUILD_TARGET=x86_64-unknown-linux-musl
export PKG_CONFIG_ALLOW_CROSS_x86_64_unknown_linux_musl=1
export PKG_CONFIG_LIBDIR_x86_64_unknown_linux_musl=$_p/lib/pkgconfig
export BINDGEN_EXTRA_CLANG_ARGS_x86_64_unknown_linux_musl="-isystem /usr/include/x86_64-linux-musl -idirafter $_imprint_native/kheaders -I$_p/include"
export CC_x86_64_unknown_linux_musl=$_imprint_native/bin/musl-cc
# -L: blkid-sys names no search path. relocation-model=static: a classic static executable.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-L native=$_p/lib -C target-feature=+crt-static -C relocation-model=static"
unset _p _imprint_key
