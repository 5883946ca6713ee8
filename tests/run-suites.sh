#!/usr/bin/env bash
# Builds what `make all` builds (beside the Debian test images), runs the static gates
# (tests/gates/run.sh), then every test suite: the host suites
# (unit tests, loop-device integration) and the QEMU end-to-end suites side by side,
# since QEMU under TCG is the slow part.
# Each suite's output goes to out/test-logs/; they are printed in order at the end
# with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
# Run by `make test` after `make deps`; run by hand, it does that first.
[ -n "${IMPRINT_DEPS_DONE:-}" ] || make -s deps || exit 1
export IMPRINT_DEPS_DONE=1
. agent/native/env.sh
logs=out/test-logs
mkdir -p "$logs"
rm -f "$logs"/*.log
# phase NAME: notes how long the run has taken up to the end of NAME (printed at the
# end: where a fresh machine's time goes before the first suite).
rm -f "$logs/phases.txt"
phase() { echo "$1 ended at $SECONDS s" >> "$logs/phases.txt"; }

qemu_tests=$(ls tests/tests/qemu_*.rs 2>/dev/null | xargs -rn1 basename | sed 's/\.rs$//')
host_tests=$(ls tests/tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | grep -v '^qemu_')

# The Debian test images (tests build them on first use, behind a lock) start now: on a
# fresh machine their download and build then overlap the builds and the gates instead
# of holding up the first suite that boots Debian.
# The arm64 image (built through qemu-user, ~12 minutes fresh) follows the x86 one, which
# the first Debian suites wait for.
{ bash images/build.sh && phase images-x86_64 && IMPRINT_IMAGE_ARCH=aarch64 bash images/build.sh \
    && phase images-aarch64; } > "$logs/images.txt" 2>&1 &
images_pid=$!

# The aarch64 artifacts and the cross-built unit tests build beside the x86_64 ones (each
# architecture has its own cargo target directory, so neither waits on the other's lock):
# a release build spends minutes in one single-threaded LTO step, and the other core
# does the other architecture meanwhile. The host lane waits for this before its aarch64
# part; the status is a file, since that lane is not this shell's child.
rm -f "$logs"/build-aarch64*.rc
{ make -s agent-aarch64 iso-aarch64
  echo $? > "$logs/build-aarch64.rc"; phase build-aarch64
  ( export IMPRINT_ARCH=aarch64 && . agent/native/env.sh && cargo test -p imprint --lib --no-run -q )
  echo $? > "$logs/build-aarch64-tests.rc"; phase build-aarch64-tests; } > "$logs/build-aarch64.txt" 2>&1 &

make -s agent initramfs iso action || { echo "make failed"; kill "$images_pid" 2>/dev/null; exit 1; }
phase build-x86_64

# The static gates first (fmt, clippy, cargo-deny); any failure fails the run here.
bash tests/gates/run.sh 2>&1 | tee "$logs/gates.txt"
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
  echo "$(grep '^gates failed:' "$logs/gates.txt"); the suites were not run"
  kill "$images_pid" 2>/dev/null
  exit 1
fi
phase gates

# Build every test binary once, before the suites compete for the two cores, with the
# same package selection the suites use below: cargo resolves features per selection,
# so a `--workspace` build here would be built a second time by the suites.
{ cargo test -p imprint --lib --no-run && cargo test -p imprint-tests --tests --no-run; } 2>&1 | tail -3 \
  || { echo "building the tests failed"; exit 1; }
phase build-tests

# aarch64 (docs/boot.md "arm64"): the unit tests cross-built and run under qemu-aarch64
# user emulation (binfmt), then loop-device suites with the shipped aarch64 agent as the
# binary under test (IMPRINT_BIN: the tests stay x86_64, the agent they start is
# emulated, its syscalls and ioctls served by this kernel). Built here, not before the
# suites: this lane ends long before the QEMU lanes.
aarch64_loop_tests="single_disk preflight chunked undo signed_documents cli"
# qemu-user can deadlock a child forked by a multi-threaded program before it execs (seen
# once in a loaded run: the child of a test that runs mkfs waited on a futex for 20
# minutes). So the emulated unit tests run one at a time, bounded; a run that hits the
# bound (exit 124) is said so and run once more, a failing one is not.
aarch64_units() {
  ( export IMPRINT_ARCH=aarch64 && . agent/native/env.sh &&
    timeout -k 10 1500 cargo test -p imprint --lib -- --test-threads=1 )
}
# suite LANE NAME CMD...: runs one suite into $logs/NAME.log and notes how long it took.
suite() {
  local lane=$1 name=$2 t0=$SECONDS rc; shift 2
  "$@" > "$logs/$name.log" 2>&1
  rc=$?
  echo "$lane $name $((SECONDS - t0)) $((SECONDS - start)) $rc" >> "$logs/times.txt"
  return $rc
}
itest() { cargo test -p imprint-tests --test "$1" -- --test-threads=2; }
# cross_built LANE [tests]: waits (bounded) for the aarch64 build started before the
# gates — the artifacts, or with `tests` the unit tests' build too — and says whether
# it succeeded.
cross_built() {
  local t0=$SECONDS rc=$logs/build-aarch64${2:+-$2}.rc
  while [ ! -f "$rc" ] && [ $((SECONDS - t0)) -lt 3600 ]; do sleep 5; done
  echo "$1 build-aarch64${2:+-$2}-wait $((SECONDS - t0)) $((SECONDS - start)) 0" >> "$logs/times.txt"
  if [ "$(cat "$rc" 2>/dev/null)" != 0 ]; then
    echo "the aarch64 build failed:"; tail -30 "$logs/build-aarch64.txt"
    return 1
  fi
}
aarch64() {
  local rc artifacts
  cross_built host || return 1
  suite host arm64_artifacts itest arm64_artifacts
  artifacts=$?
  cross_built host tests || return 1
  suite host unit-aarch64 aarch64_units
  rc=$?
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    echo "the emulated unit tests hung (qemu-user); running them again" | tee -a "$logs/gates.txt"
    mv "$logs/unit-aarch64.log" "$logs/unit-aarch64-hung.txt"
    suite host unit-aarch64 aarch64_units
    rc=$?
  fi
  for t in $aarch64_loop_tests; do
    IMPRINT_BIN=$PWD/out/aarch64/imprint suite host "$t-aarch64" \
      timeout -k 10 900 cargo test -p imprint-tests --test "$t" -- --test-threads=2 || rc=1
  done
  [ $artifacts -eq 0 ] || rc=1
  return $rc
}
# Four lanes side by side (seconds measured on 2 cores, all lanes running; the summary
# prints each suite's time). Under TCG a Debian rootfs provisioning spends most of its
# time in the deployed system's update-initramfs (some 7000 processes, each slow to
# start), and the guests wait on timers, DHCP and firmware a good part of the time: with
# three lanes the machine was 37 % idle. So the suites that provision Debian each start
# a lane: a the single-disk seed layout (from a registry, with its undo run, 1449 s),
# b the four-disk md levels with the RAID10 Debian bound to tang and the TPM (six
# provisionings, four boots), c the arm64 server (disk image, then a LUKS rootfs
# layout; 1834 s), each followed by short suites; the host lane runs the unit and
# loop-device suites, the aarch64 ones, then three short QEMU suites.
lane_a="qemu_storage_single qemu_deployed qemu_images qemu_powercut"
lane_b="qemu_raid_levels qemu_provision qemu_boot"
lane_c="qemu_arm64 qemu_erase qemu_safety qemu_disk_identity"
lane_host="qemu_volumes qemu_network qemu_ipv6"
# Every QEMU suite is in exactly one lane: a new one not placed here fails the run.
for t in $qemu_tests; do
  n=$(echo " $lane_a $lane_b $lane_c $lane_host " | grep -o " $t " | wc -l)
  [ "$n" -eq 1 ] || { echo "tests/run-suites.sh: $t is in $n lanes (place it in one)"; exit 1; }
done
host() {
  local rc=0
  suite host unit cargo test -p imprint --lib -- --test-threads=2 || rc=1
  for t in $host_tests; do
    [ "$t" != arm64_artifacts ] || continue   # after the aarch64 build, below
    suite host "$t" itest "$t" || rc=1
  done
  aarch64 || rc=1
  for t in $lane_host; do
    suite host "$t" itest "$t" || rc=1
  done
  return $rc
}
qemu() { # qemu a|b|c
  local rc=0 lane
  case $1 in a) lane=$lane_a ;; b) lane=$lane_b ;; *) lane=$lane_c ;; esac
  for t in $lane; do
    if [ "$t" = qemu_arm64 ] && ! cross_built "$1"; then rc=1; continue; fi
    suite "$1" "$t" itest "$t" || rc=1
  done
  return $rc
}

start=$SECONDS
rm -f "$logs/times.txt"
host & hp=$!
qemu a & qa=$!
qemu b & qb=$!
qemu c & qc=$!
wait $hp; hrc=$?
wait $qa; qrc=$?
wait $qb || qrc=1
wait $qc || qrc=1
wait "$images_pid" 2>/dev/null

passed=0 failed=0
for f in "$logs"/*.log; do
  echo "=== $(basename "$f" .log)"
  grep -E '^test .* \.\.\. ' "$f" | grep -v '\.\.\. ok$' || true
  # A failure's cause: the panic message and what follows it (the console tail for QEMU).
  grep -A 70 -E 'panicked at' "$f" | head -150 || true
  grep -E '^test result:' "$f" | tail -1
  p=$(grep -E '^test result:' "$f" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
  n=$(grep -E '^test result:' "$f" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${n:-0}))
  if ! grep -q '^test result:' "$f"; then echo "(no result: see $f)"; tail -20 "$f"; failed=$((failed + 1)); fi
done
# Each suite's time (lane, seconds, when it ended): where the run's time went.
echo "=== phases before the suites (seconds since the script started)"
cat "$logs/phases.txt" 2>/dev/null
echo "=== times (lane suite seconds ended-at exit; the suites started at $start s)"
sort -k4 -n "$logs/times.txt" 2>/dev/null
echo "suites took $((SECONDS - start)) s; logs in $logs/"
echo "$passed passed, $failed failed"
[ $hrc -eq 0 ] && [ $qrc -eq 0 ] && [ $failed -eq 0 ]
