#!/usr/bin/env bash
# Builds the static musl C libraries the agent links (libblkid, libuuid, json-c,
# libdevmapper, libcrypto, libcryptsetup) from Debian's source packages, for the
# machine's own architecture or cross-built for aarch64 (then musl itself is built
# from Debian's source too, with the aarch64-linux-gnu cross compiler as its "gcc").
#
#   build-static-libs.sh OUTDIR [x86_64|aarch64]
#
# The result is OUTDIR/prefix (lib/, include/, lib/pkgconfig), OUTDIR/kheaders and
# OUTDIR/bin/musl-cc (the C compiler for the target, which cargo's CC_<target> names).
# OUTDIR/done is written last; callers key OUTDIR by this script's hash, so an
# unchanged script never rebuilds.
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUTDIR [x86_64|aarch64]}")
arch=${2:-x86_64}
case $arch in
  x86_64) kinc=/usr/include kasm=/usr/include/x86_64-linux-gnu/asm ossl=linux-x86_64
          argon=--enable-internal-sse-argon2 ;;
  aarch64) kinc=/usr/aarch64-linux-gnu/include kasm=$kinc/asm ossl=linux-aarch64
          argon=--enable-internal-argon2 ;;
  *) echo "build-static-libs: unknown architecture $arch" >&2; exit 2 ;;
esac
[ -f "$out/done" ] && exit 0
jobs=$(nproc)
src=$out/src prefix=$out/prefix kh=$out/kheaders logs=$out/logs
rm -rf "$out"; mkdir -p "$src" "$prefix/lib/pkgconfig" "$prefix/include" "$kh" "$logs" "$out/bin"

step() { # step NAME CMD... : runs CMD with its output in logs/NAME.log, fails loudly
  local name=$1; shift; local t0=$SECONDS
  set +e; ( set -e; "$@" ) >"$logs/$name.log" 2>&1; local rc=$?; set -e
  if [ $rc -ne 0 ]; then echo "static-libs: $name failed; last lines of $logs/$name.log:" >&2; tail -30 "$logs/$name.log" >&2; exit 1; fi
  echo "static-libs: $name ($((SECONDS - t0)) s)"
}

fetch() { # fetch PKG -> $src/PKG, with Debian's patches when the .dsc is fetchable
  local pkg=$1; cd "$src"
  apt-get source --download-only "$pkg" || true   # a lagging mirror may 404 the .dsc
  local dsc; dsc=$(ls "${pkg}"_*.dsc 2>/dev/null | sort -V | tail -1 || true)
  if [ -n "$dsc" ] && dpkg-source -x "$dsc" "$src/$pkg"; then return; fi
  local orig; orig=$(ls "${pkg}"_*.orig.tar.* | grep -v '\.asc$' | sort -V | tail -1)
  mkdir -p "$src/$pkg" && tar -xf "$orig" -C "$src/$pkg" --strip-components=1
}
sources=(util-linux json-c lvm2 openssl cryptsetup)
[ "$arch" = x86_64 ] || sources+=(musl)
for p in "${sources[@]}"; do step "fetch-$p" fetch "$p"; done

# Cross: musl for aarch64, installed with its musl-gcc wrapper (a specs file that puts
# musl's headers, crt files and libc.a in place of glibc's around the cross gcc).
musl_cross() {
  cd "$src/musl"
  ./configure --target=aarch64-linux-musl CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc \
    --prefix="$out/musl" --disable-shared --enable-wrapper=gcc
  make -j"$jobs" && make install
}
musl_gcc=musl-gcc musl_lib=/usr/lib/x86_64-linux-musl
if [ "$arch" = aarch64 ]; then step musl musl_cross; musl_gcc=$out/musl/bin/musl-gcc musl_lib=$out/musl/lib; fi

# musl-gcc sees only musl's headers; the libraries also need the kernel UAPI headers.
# A wrapper (not CFLAGS) because lvm2 runs "$(CC) -E" without CFLAGS.
ln -sfn "$kinc/linux" "$kh/linux"
ln -sfn "$kinc/asm-generic" "$kh/asm-generic"
ln -sfn "$kasm" "$kh/asm"
# On aarch64, gcc's default outline atomics call helpers in libgcc, which a Rust link
# (-nodefaultlibs) does not bring: inline atomics instead.
cflags_arch=; [ "$arch" = x86_64 ] || cflags_arch=-mno-outline-atomics
printf '#!/bin/sh\nexec %s %s "$@" -idirafter %s\n' "$musl_gcc" "$cflags_arch" "$kh" > "$out/bin/musl-cc"
chmod +x "$out/bin/musl-cc"
tools=; [ "$arch" = x86_64 ] || tools=aarch64-linux-gnu-
export PATH=$out/bin:$PATH CC=musl-cc AR=${tools}ar RANLIB=${tools}ranlib
export CFLAGS="-O2 -fPIC -ffunction-sections -fdata-sections" CPPFLAGS="-I$prefix/include"
export LDFLAGS="-L$prefix/lib -static" PKG_CONFIG_LIBDIR=$prefix/lib/pkgconfig
unset PKG_CONFIG_PATH
host=(--host="$arch-linux-musl" --prefix="$prefix" --libdir="$prefix/lib")
cmake_cross=()
[ -z "$tools" ] || cmake_cross=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR="$arch"
  -DCMAKE_AR="$(command -v "${tools}ar")" -DCMAKE_RANLIB="$(command -v "${tools}ranlib")")

util_linux() {
  cd "$src/util-linux"
  ./configure "${host[@]}" --disable-all-programs --enable-libuuid --enable-libblkid \
    --disable-shared --enable-static --without-udev --without-systemd --without-python \
    --without-readline --without-ncurses --without-ncursesw --without-tinfo \
    --without-selinux --without-audit --disable-nls --disable-bash-completion \
    --disable-asciidoc --disable-poman
  make -j"$jobs" && make install
}
json_c() {
  mkdir -p "$src/json-c/build" && cd "$src/json-c/build"
  cmake .. -DCMAKE_C_COMPILER=musl-cc -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DBUILD_STATIC_LIBS=ON \
    -DBUILD_TESTING=OFF -DDISABLE_WERROR=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON "${cmake_cross[@]}"
  make -j"$jobs" && make install
}
devmapper() {
  # Only libdm; udev sync off so libdm makes /dev/mapper nodes itself (no udev in the ramdisk).
  cd "$src/lvm2"
  ./configure "${host[@]}" --with-usrlibdir="$prefix/lib" --enable-static_link --enable-pkgconfig \
    --disable-udev_sync --disable-udev_rules --disable-selinux --disable-blkid_wiping \
    --disable-readline --disable-systemd-journal --disable-nls --disable-dmeventd \
    --disable-use-lvmlockd --disable-fsadm --disable-app-machineid \
    ac_cv_func_malloc_0_nonnull=yes ac_cv_func_realloc_0_nonnull=yes
  make -j"$jobs" device-mapper
  make -C libdm install_static install_include install_pkgconfig
}
openssl() {
  # cryptsetup's crypto backend only (userspace ciphers work without AF_ALG); TLS is rustls.
  cd "$src/openssl"
  ./Configure "$ossl" --prefix="$prefix" --libdir=lib --openssldir=/etc/ssl \
    no-shared no-module no-tests no-afalgeng no-engine no-dso no-async no-comp \
    no-ssl3 no-dtls no-srp no-psk -fPIC -ffunction-sections -fdata-sections -O2
  make -j"$jobs" build_libs && make install_dev
}
cryptsetup() {
  cd "$src/cryptsetup"
  [ -x configure ] || ./autogen.sh
  # configure demands popt although the library never uses it.
  ./configure "${host[@]}" --disable-shared --enable-static \
    --with-crypto_backend=openssl "$argon" \
    --disable-external-tokens --disable-ssh-token --disable-cryptsetup \
    --disable-veritysetup --disable-integritysetup --disable-asciidoc --disable-nls \
    --disable-udev --disable-selinux --disable-pwquality --disable-fips \
    ac_cv_lib_popt_poptConfigFileToString=yes
  make -j"$jobs" libcryptsetup.la
  make install-libLTLIBRARIES install-includeHEADERS install-pkgconfigDATA
}
step util-linux util_linux
step json-c json_c
step libdevmapper devmapper
step openssl openssl
step cryptsetup cryptsetup

# pkg-config asks for -lm -ldl -pthread; Rust's self-contained musl has no such archives,
# so the linker would fall through to glibc's. Shadow them with musl's empty stubs.
for l in m dl pthread rt util resolv; do cp "$musl_lib/lib$l.a" "$prefix/lib/"; done
rm -f "$prefix"/lib/*.la
rm -rf "$src"
touch "$out/done"
