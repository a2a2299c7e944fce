#!/usr/bin/env bash
# The main job end to end on a sample: generate a sample imgpkg bundle (a root bundle with a
# nested bundle, a plain image and a 2-platform index) as an OCI layout, archive it with
# ferry (also in volumes), verify and inspect the archive (also from a pipe), read it back with
# skopeo as an independent tool, import it into a local registry, then describe, pull and copy
# the relocated bundle there.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=target/release/ferry
work=$(mktemp -d -t ferry-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "generating sample layouts (examples/fixtures/main.rs)"
cargo run --quiet --release --example fixtures -- layouts "$work/layouts"
ls "$work/layouts"

step "ferry export --oci-layout $work/layouts/bundle -o bundle.tar"
"$ferry" export --oci-layout "$work/layouts/bundle" -o "$work/bundle.tar" --json >"$work/export.json"
# The identity (sha256 of index.json) travels apart from the archive: it pins the one file of
# the archive that no digest covers.
identity=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["identity"])' "$work/export.json")
echo "identity printed by the export: $identity"

step "ferry verify bundle.tar --identity $identity"
"$ferry" verify "$work/bundle.tar" --identity "$identity"

step "ferry inspect bundle.tar"
"$ferry" inspect "$work/bundle.tar"

step "for removable media: the same archive in 16 KiB volumes with their table, read in place"
"$ferry" export -q --oci-layout "$work/layouts/bundle" -o "$work/split.tar" --volume-size 16KiB
ls "$work" | grep split.tar
cat "$work"/split.tar.0* | cmp - "$work/bundle.tar" && echo "the volumes concatenate to bundle.tar"
"$ferry" verify "$work/split.tar.volumes.json" --volume-digests

step "and from a pipe (a tape, or cat of the volumes), in one pass"
cat "$work"/split.tar.0* | "$ferry" verify -

# skopeo 1.9 selects entries by name only when their media type is OCI (imgpkg bundles are
# Docker schema 2; see spec/archive.md AR-1), so read the multi-platform index by its name.
index_name=$("$ferry" inspect "$work/bundle.tar" | awk '$1 == "index" { print $2; exit }')
step "skopeo reads the same archive (oci-archive:bundle.tar:$index_name)"
skopeo inspect --raw "oci-archive:$work/bundle.tar:$index_name" | head -c 400; echo

step "a flipped byte is caught (exit code 3)"
cp "$work/bundle.tar" "$work/tampered.tar"
size=$(stat -c %s "$work/tampered.tar")
printf '\xff' | dd of="$work/tampered.tar" bs=1 seek=$((size - 2048)) conv=notrunc status=none
set +e
"$ferry" verify "$work/tampered.tar"
code=$?
set -e
echo "exit code: $code"
[ "$code" -eq 3 ]
step "importing into a local registry (docker-registry on 127.0.0.1, plain HTTP)"
source scripts/registry.sh
registry_start "$work/registry"
port=$REGISTRY_PORT
trap 'registry_stop $REGISTRY_PID; rm -rf "$work"' EXIT
"$ferry" import "$work/bundle.tar" --to-repo "127.0.0.1:$port/demo/bundle" --registry-insecure \
  --identity "$identity" --lock-output "$work/bundle.lock.yml"
cat "$work/bundle.lock.yml"

step "the repository's tags (imgpkg's internal tags included)"
"$ferry" tag list "127.0.0.1:$port/demo/bundle" --registry-insecure --imgpkg-internal-tags

step "a second import, from the volumes through a pipe, uploads nothing"
cat "$work"/split.tar.0* | "$ferry" import - --to-repo "127.0.0.1:$port/demo/bundle" --registry-insecure

bundle_ref=$(awk '/image:/ {print $2}' "$work/bundle.lock.yml")

step "the relocated bundle's tree, read from the new repository alone"
"$ferry" describe -b "$bundle_ref" --registry-insecure

step "pulling it back: every .imgpkg/images.yml now points at the new repository"
"$ferry" pull -b "$bundle_ref" -o "$work/pulled" -r --registry-insecure
(cd "$work/pulled" && find . -name images.yml)
cat "$work/pulled/.imgpkg/images.yml"

step "copying it registry to registry: the blobs are mounted, not uploaded again"
"$ferry" copy -b "$bundle_ref" --to-repo "127.0.0.1:$port/prod/bundle" --registry-insecure

step "demo complete"
