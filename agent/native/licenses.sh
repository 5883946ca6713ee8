#!/usr/bin/env bash
# Writes the licence notices that go with out/imprint into OUTDIR (docs/licensing.md):
# NOTICE, the policy, the licence texts, the versions of the static C libraries
# linked in and the crates compiled in with their licences.
#   . agent/native/env.sh && licenses.sh OUTDIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: $0 OUTDIR}
target=${CARGO_BUILD_TARGET:?source agent/native/env.sh first}
pc_var=PKG_CONFIG_LIBDIR_$(echo "$target" | tr - _)
mkdir -p "$out"
cp "$root/NOTICE" "$out/NOTICE"
cp "$root/docs/licensing.md" "$out/licensing.md"
for l in GPL-2:GPL-2.0 GPL-3:GPL-3.0 LGPL-2.1:LGPL-2.1 Apache-2.0:Apache-2.0 MPL-2.0:MPL-2.0; do
  cp "/usr/share/common-licenses/${l%%:*}" "$out/${l#*:}"
done

# pkg-config name, Debian source package, licence.
libs="libcryptsetup cryptsetup GPL-2.0-or-later-with-OpenSSL-exception
blkid util-linux LGPL-2.1-or-later
uuid util-linux BSD-3-Clause
devmapper lvm2 LGPL-2.1
json-c json-c MIT
libcrypto openssl Apache-2.0"
{
  printf '%-14s %-12s %-12s %s\n' "# library" version "Debian source" licence
  while read -r pc pkg lic; do
    v=$(PKG_CONFIG_LIBDIR=${!pc_var} pkg-config --modversion "$pc")
    printf '%-14s %-12s %-12s %s\n' "$pc" "$v" "$pkg" "$lic"
  done <<<"$libs"
  printf '%-14s %-12s %-12s %s\n' musl "$(dpkg-query -W -f='${Version}' musl-dev)" musl MIT
} > "$out/native-libraries.txt"

# The crates compiled into the agent for the musl target (no build or dev dependencies).
cd "$root"
cargo metadata -q --format-version 1 --locked --filter-platform "$target" |
  python3 -c '
import json, sys
m = json.load(sys.stdin)
pk = {p["id"]: p for p in m["packages"]}
nodes = {n["id"]: n for n in m["resolve"]["nodes"]}
root = next(i for i, p in pk.items() if p["name"] == "imprint" and p["source"] is None)
seen, todo = set(), [root]
while todo:
    i = todo.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] is None for k in d["dep_kinds"]):
            todo.append(d["pkg"])
print("%-32s %-12s %s" % ("# crate", "version", "licence"))
for p in sorted((pk[i] for i in seen if i != root), key=lambda p: (p["name"], p["version"])):
    lic = p["license"] or "see " + (p["license_file"] or "the crate")
    print("%-32s %-12s %s" % (p["name"], p["version"], lic))
' > "$out/crates.txt"
