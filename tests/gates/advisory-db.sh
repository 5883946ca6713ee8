#!/usr/bin/env bash
# Fetches the RustSec advisory database that the cargo-deny gate reads offline
# (tests/gates/run.sh), and refreshes it at most once a day (a failed try
# is retried after an hour). Never fails: without a network the cached copy is kept,
# and without any copy the gate skips advisories with a warning. Run by `make deps`.
set -uo pipefail
cd "$(dirname "$0")/../.."
db=${IMPRINT_ADVISORY_DB:-$PWD/target/cache/advisory-dbs}
export IMPRINT_ADVISORY_DB=$db
mkdir -p "$db"
if [ -n "$(find "$db/.fetched" -mmin -1440 2>/dev/null)" ] ||
  [ -n "$(find "$db/.tried" -mmin -60 2>/dev/null)" ]; then
  exit 0
fi
touch "$db/.tried"
command -v cargo-deny >/dev/null || { echo "advisory-db: cargo-deny is not installed"; exit 0; }
# cargo-deny clones or fast-forwards the database itself; the timeout keeps a network
# that hangs instead of refusing from stalling the build.
if timeout 180 cargo deny fetch db >"$db/fetch.log" 2>&1; then
  touch "$db/.fetched"
  echo "advisory-db: RustSec database up to date in $db"
elif compgen -G "$db/*/crates" >/dev/null; then
  echo "advisory-db: fetch failed (see $db/fetch.log); keeping the cached database"
else
  echo "advisory-db: WARNING: fetch failed (see $db/fetch.log) and nothing is cached;"
  echo "advisory-db: WARNING: the deny gate will check bans, licenses and sources only"
fi
exit 0
