#!/usr/bin/env bash
# Regenerates the committed fixtures: small OCI layouts (examples/fixtures/main.rs) and the corpus
# of tampered archives made from a good archive of the bundle layout. See fixtures/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf fixtures/layouts fixtures/tampered
cargo run --quiet --release --example fixtures -- layouts fixtures/layouts
work=$(mktemp -d -t ferry-fixtures.XXXXXX)
trap 'rm -rf "$work"' EXIT
target/release/ferry export -q --oci-layout fixtures/layouts/bundle -o "$work/good.tar"
cargo run --quiet --release --example fixtures -- tamper "$work/good.tar" fixtures/tampered
