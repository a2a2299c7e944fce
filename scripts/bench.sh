#!/usr/bin/env bash
# `make bench`: ferry verify beside `openssl dgst -sha256` and `sha256sum` on the same
# generated archive (~1 GiB of incompressible layers from a fixed seed), in the same run.
# Reports the median of RUNS timed runs after a warm-up (page cache warm for every tool alike)
# and ferry's peak RSS. Set BENCH_MIB to change the size, RUNS the repetitions.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=$PWD/target/release/ferry
size_mib=${BENCH_MIB:-1024}
runs=${RUNS:-5}
work=${BENCH_DIR:-$PWD/bench/work}
mkdir -p "$work"
layout=$work/layout-$size_mib
archive=$work/bench-$size_mib.tar

if [ ! -f "$layout/index.json" ]; then
  echo "generating a ${size_mib} MiB layout (seed 42) in $layout" >&2
  rm -rf "$layout"
  cargo run --quiet --release --example fixtures -- bench "$layout" --seed 42 --size-mib "$size_mib"
fi
if [ ! -f "$archive" ]; then
  "$ferry" export -q --oci-layout "$layout" -o "$archive"
fi
bytes=$(stat -c %s "$archive")

# seconds of one run of "$@", output discarded
time_once() {
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
  "$@" >/dev/null 2>&1 || true   # warm-up
  for _ in $(seq "$runs"); do time_once "$@"; done | median
}

ferry_s=$(measure "$ferry" verify -q "$archive")
openssl_s=$(measure openssl dgst -sha256 "$archive")
sha256sum_s=$(measure sha256sum "$archive")
rss_kib=$(/usr/bin/time -f %M "$ferry" verify -q "$archive" 2>&1 >/dev/null | tail -n 1)

mib=$(echo "$bytes / 1048576" | bc -l)
printf '\nverify of %s (%.0f MiB), median of %d runs, %s cores\n' "$archive" "$mib" "$runs" "$(nproc)"
printf '%-22s %8s %10s %8s\n' tool seconds MiB/s "vs openssl"
for row in "ferry verify:$ferry_s" "openssl dgst -sha256:$openssl_s" "sha256sum:$sha256sum_s"; do
  name=${row%%:*}; s=${row##*:}
  printf '%-22s %8.3f %10.0f %7.2fx\n' "$name" "$s" "$(echo "$mib / $s" | bc -l)" "$(echo "$openssl_s / $s" | bc -l)"
done
printf 'ferry verify peak RSS: %d KiB (%.1f MiB)\n' "$rss_kib" "$(echo "$rss_kib / 1024" | bc -l)"

# The registry client beside curl (issue 3): one large blob down and up.
bash "$(dirname "$0")/bench-registry.sh"

# ferry export and import of a whole bench set beside their network, disk and upload floors.
bash "$(dirname "$0")/bench-transfer.sh"

# One image with a single large layer (2 GiB) exported beside curl | sha256sum and dd.
bash "$(dirname "$0")/bench-blob.sh"

# ferry serve beside docker-registry serving the same content (issue 16).
bash "$(dirname "$0")/bench-serve.sh"

# Importing many small blobs (10 images x 1,000 layers) beside imgpkg: requests per blob (issue 14).
bash "$(dirname "$0")/bench-many.sh"
