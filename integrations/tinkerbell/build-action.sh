#!/usr/bin/env bash
# Builds imprint's Tinkerbell action image without Docker: an OCI image layout holding
# only the static agent, written directly (blobs, config, manifest, index.json).
#   integrations/tinkerbell/build-action.sh out/imprint out/tinkerbell
# The layout's tag is imprint's version; push it with
#   skopeo copy oci:out/tinkerbell:<version> docker://registry.example/imprint-action:<version>
# The same agent binary gives the same image, byte for byte (fixed times, owners, order).
set -euo pipefail
export LC_ALL=C
agent=${1:?usage: build-action.sh AGENT OUT_DIR}
dest=${2:?usage: build-action.sh AGENT OUT_DIR}
[ -x "$agent" ] || { echo "build-action: $agent is missing: run 'make agent' first" >&2; exit 1; }
version=$("$agent" --version | cut -d' ' -f2)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/usr/bin" "$work/blobs/sha256"
install -m 0755 "$agent" "$work/root/usr/bin/imprint"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
blob() { # file → "<digest> <size>", stored under blobs/sha256/
  local d; d=$(sha "$1")
  cp "$1" "$work/blobs/sha256/$d"
  echo "$d $(size "$1")"
}

# The one layer: usr/ and usr/bin/ and the agent, owned by root, at the epoch.
tar --create --file "$work/layer.tar" --directory "$work/root" \
  --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  usr
diff_id=$(sha "$work/layer.tar")
gzip -9 -n < "$work/layer.tar" > "$work/layer.tar.gz"
read -r layer layer_size < <(blob "$work/layer.tar.gz")

# The config: what a runtime (tink-agent's Docker or containerd) starts. Tinkerbell
# passes the document's URL in the action's environment as IMPRINT_CONFIG; the action
# leaves the reboot to a later action that runs in the host's PID namespace.
cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/usr/bin/imprint","run","--no-finish"],"Env":["PATH=/usr/bin"],"Labels":{"org.opencontainers.image.title":"imprint","org.opencontainers.image.version":"$version","org.opencontainers.image.description":"imprint provisioning agent as a Tinkerbell action"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created_by":"integrations/tinkerbell/build-action.sh"}]}
JSON
read -r config config_size < <(blob "$work/config.json")

cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$layer_size}],"annotations":{"org.opencontainers.image.version":"$version"}}
JSON
read -r manifest manifest_size < <(blob "$work/manifest.json")

cat > "$work/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"$version"}}]}
JSON
printf '{"imageLayoutVersion":"1.0.0"}' > "$work/oci-layout"

# Replace the layout whole.
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
cp -r "$work/blobs" "$work/index.json" "$work/oci-layout" "$dest.tmp/"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "build-action: $dest (oci:$dest:$version, manifest sha256:$manifest)"
