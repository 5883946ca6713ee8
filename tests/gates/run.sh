#!/usr/bin/env bash
# The static gates `make test` runs before any suite (tests/run-suites.sh): formatting,
# clippy with every warning an error (lint levels in the workspace Cargo.toml),
# cargo-deny (advisories, bans, licences, sources; deny.toml), and the module graph
# (tests/gates/module_graph.py: no import cycles, no function over 120 lines). Each gate runs even when
# an earlier one failed; the last line names the failed ones and the exit code says.
#   bash tests/gates/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
. agent/native/env.sh || exit 1

# Where `make deps` (tests/gates/advisory-db.sh) keeps the RustSec database.
export IMPRINT_ADVISORY_DB=${IMPRINT_ADVISORY_DB:-$PWD/target/cache/advisory-dbs}

failed=()
gate() { # gate NAME CMD...
  local name=$1 t0=$SECONDS; shift
  echo "== gate $name: $*"
  if "$@"; then
    echo "== gate $name: ok ($((SECONDS - t0)) s)"
  else
    echo "== gate $name: FAILED ($((SECONDS - t0)) s)"
    failed+=("$name")
  fi
}

deny() {
  command -v cargo-deny >/dev/null || { echo "cargo-deny is missing: run make deps"; return 1; }
  # cargo-deny reads the metadata of every platform's dependencies; a build fetches only
  # this target's, and --frozen below forbids fetching the rest.
  cargo fetch --locked -q || return 1
  if compgen -G "$IMPRINT_ADVISORY_DB/*/crates" >/dev/null; then
    cargo deny --frozen check
  else
    echo "WARNING: no RustSec advisory database in $IMPRINT_ADVISORY_DB (make deps could not"
    echo "WARNING: fetch it: no network?). Checking bans, licenses and sources; NOT advisories."
    cargo deny --frozen check bans licenses sources
  fi
}

gate fmt cargo fmt --all --check
gate clippy cargo clippy --workspace --all-targets --locked -- -D warnings
gate deny deny
# No two files of these module folders import each other; no function over 120 lines.
gate modules python3 tests/gates/module_graph.py agent/src image planner config engine engine.rs boot oci trust rootfs

if [ ${#failed[@]} -gt 0 ]; then
  echo "gates failed: ${failed[*]}"
  exit 1
fi
echo "gates passed: fmt clippy deny modules"
