#!/usr/bin/env bash
# `make bench`, serve part (issue 16): `ferry serve` of the bench archive beside Debian's
# docker-registry serving the same content from its own storage, in the same run. Every blob
# of the archive is pulled with parallel `curl` (CLIENTS at once, default 32) from each server,
# rounds interleaved (ferry, registry, ferry, ...); reports the median seconds of RUNS rounds
# (default 3), the ratio, and ferry's peak RSS while serving (VmHWM). Both servers run on
# 127.0.0.1 and read from the page cache (one warm-up round each). What bounds the figure: on a
# machine of few cores, the CPU shared by curl, the server and the kernel's loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=$PWD/target/release/ferry
size_mib=${BENCH_MIB:-1024}
runs=${RUNS:-3}
clients=${CLIENTS:-32}
work=${BENCH_DIR:-$PWD/bench/work}
archive=$work/bench-$size_mib.tar
source scripts/registry.sh
source scripts/bench-lib.sh
[ -f "$archive" ] || { echo "bench-serve: $archive is missing (scripts/bench.sh makes it)" >&2; exit 1; }

serve_dir=$(mktemp -d)
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  [ -n "${REGISTRY_PID:-}" ] && registry_stop "$REGISTRY_PID"
  rm -rf "$serve_dir"
}
trap cleanup EXIT

# ferry serve, everything in one repository as an import tags it.
"$ferry" serve "$archive" --addr 127.0.0.1:0 --repo bench/set --json -q >"$serve_dir/ready" 2>"$serve_dir/serve.log" &
serve_pid=$!
for _ in $(seq 600); do [ -s "$serve_dir/ready" ] && break; sleep 0.1; done
[ -s "$serve_dir/ready" ] || { echo "ferry serve did not start:" >&2; cat "$serve_dir/serve.log" >&2; exit 1; }
ferry_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$serve_dir/ready")

# docker-registry with the same content, imported into the same repository name.
registry_start "$serve_dir/registry"
"$ferry" import -q "$archive" --to-repo "127.0.0.1:$REGISTRY_PORT/bench/set" --registry-insecure
registry_url="http://127.0.0.1:$REGISTRY_PORT"

# The archive's configs and layers (a registry serves manifests under /manifests/, not /blobs/).
"$ferry" inventory -q "$archive" -o "$serve_dir/inventory" >/dev/null
awk '$3 == "config" || $3 == "layer" { sub("sha256:", "", $1); print $1 }' "$serve_dir/inventory" >"$serve_dir/blobs"
count=$(wc -l <"$serve_dir/blobs")
mib=$(awk '$3 == "config" || $3 == "layer" { s += $2 } END { printf "%d", s / 1048576 }' "$serve_dir/inventory")
pull_all() {
  sed "s|^|$1/v2/bench/set/blobs/sha256:|" "$serve_dir/blobs" | xargs -P "$clients" -I{} curl -sf -o /dev/null {}
}
time_once() {
  local start end
  start=$(date +%s.%N); pull_all "$1"; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
pull_all "$ferry_url"; pull_all "$registry_url"   # warm-up, and a check that both serve all
: >"$serve_dir/ferry.s"; : >"$serve_dir/registry.s"
ferry_cpu0=$(registry_cpu_seconds "$serve_pid"); registry_cpu0=$(registry_cpu_seconds "$REGISTRY_PID")
for _ in $(seq "$runs"); do
  time_once "$ferry_url" >>"$serve_dir/ferry.s"
  time_once "$registry_url" >>"$serve_dir/registry.s"
done
# CPU-seconds each server spent per round: ferry hashes every full read again (spec/serve.md
# SV-3: a blob changed on the media after the start check is never delivered whole), which a
# registry serving its own storage does not; with the clients on the same cores, that is the bound.
ferry_cpu=$(echo "($(registry_cpu_seconds "$serve_pid") - $ferry_cpu0) / $runs" | bc -l)
registry_cpu=$(echo "($(registry_cpu_seconds "$REGISTRY_PID") - $registry_cpu0) / $runs" | bc -l)
ferry_s=$(median <"$serve_dir/ferry.s")
registry_s=$(median <"$serve_dir/registry.s")
rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status")
printf '\nserve: every blob (%d, %d MiB) pulled by %d parallel curl clients, median of %d rounds\n' \
  "$count" "$mib" "$clients" "$runs"
printf '%-26s %8s %10s %12s\n' server seconds MiB/s "vs registry"
printf '%-26s %8.3f %10.0f %11.2fx\n' "ferry serve" "$ferry_s" "$(echo "$mib / $ferry_s" | bc -l)" \
  "$(echo "$registry_s / $ferry_s" | bc -l)"
printf '%-26s %8.3f %10.0f %11.2fx\n' "docker-registry" "$registry_s" "$(echo "$mib / $registry_s" | bc -l)" 1
printf 'CPU-seconds per round: ferry serve %.2f, docker-registry %.2f (%d cores, shared with the clients)\n' \
  "$ferry_cpu" "$registry_cpu" "$(nproc)"
printf 'ferry serve peak RSS: %d KiB (%.1f MiB) with %d clients (goal: at most 64 MiB)\n' \
  "$rss_kib" "$(echo "$rss_kib / 1024" | bc -l)" "$clients"
