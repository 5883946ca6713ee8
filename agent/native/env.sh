# Sourced (by the Makefile and by hand): builds the static C libraries if their
# cache is missing, and exports what cargo needs for the static musl build.
#   . agent/native/env.sh && cargo build --release
#   IMPRINT_ARCH=aarch64 . agent/native/env.sh && cargo build --release   (cross-built)
# The cross build links with aarch64-linux-gnu-gcc (Rust brings musl's crt and libc)
# and runs its test binaries under qemu-aarch64 user emulation.
_imprint_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_imprint_arch=${IMPRINT_ARCH:-x86_64}
_imprint_key=$(sha256sum "$_imprint_root/agent/native/build-static-libs.sh" | cut -c1-16)
# Every architecture builds under its own cargo target directory (the cross build in
# target/cross-aarch64): cargo locks a target directory for a whole build, so with one
# each, the x86_64 and aarch64 builds can run side by side. IMPRINT_TARGET_BASE keeps
# the base when this file is sourced again for the other architecture.
export IMPRINT_TARGET_BASE=${IMPRINT_TARGET_BASE:-${CARGO_TARGET_DIR:-$_imprint_root/target}}
_imprint_native=$IMPRINT_TARGET_BASE/native/$_imprint_key
if [ "$_imprint_arch" = x86_64 ]; then
  export CARGO_TARGET_DIR=$IMPRINT_TARGET_BASE
else
  _imprint_native=$_imprint_native-$_imprint_arch
  export CARGO_TARGET_DIR=$IMPRINT_TARGET_BASE/cross-$_imprint_arch
fi
if [ ! -f "$_imprint_native/done" ]; then
  bash "$_imprint_root/agent/native/build-static-libs.sh" "$_imprint_native" "$_imprint_arch" ||
    return 1 2>/dev/null || exit 1
fi
_p=$_imprint_native/prefix
_t=${_imprint_arch}_unknown_linux_musl
_T=$(echo "$_t" | tr a-z A-Z)
export CARGO_BUILD_TARGET=$_imprint_arch-unknown-linux-musl
export "PKG_CONFIG_ALLOW_CROSS_$_t=1"
export "PKG_CONFIG_LIBDIR_$_t=$_p/lib/pkgconfig"
export "CC_$_t=$_imprint_native/bin/musl-cc"
# -L: blkid-sys names no search path. relocation-model=static: a classic static executable.
export "CARGO_TARGET_${_T}_RUSTFLAGS=-L native=$_p/lib -C target-feature=+crt-static -C relocation-model=static"
if [ "$_imprint_arch" = x86_64 ]; then
  export "BINDGEN_EXTRA_CLANG_ARGS_$_t=-isystem /usr/include/x86_64-linux-musl -idirafter $_imprint_native/kheaders -I$_p/include"
else
  export "BINDGEN_EXTRA_CLANG_ARGS_$_t=-isystem $_imprint_native/musl/include -idirafter $_imprint_native/kheaders -I$_p/include"
  export "AR_$_t=aarch64-linux-gnu-ar"
  export "CARGO_TARGET_${_T}_LINKER=aarch64-linux-gnu-gcc"
  export "CARGO_TARGET_${_T}_RUNNER=qemu-aarch64-static"
fi
unset _p _t _T _imprint_key
