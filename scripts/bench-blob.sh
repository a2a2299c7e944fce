#!/usr/bin/env bash
# `make bench`, one-large-blob part: one image whose single layer is BIG_MIB (default 2048) MiB
# of random bytes, in a local docker-registry (plain HTTP on 127.0.0.1), exported by ferry
# beside what no verified export can beat, in the same run, round by round:
#
#   network+hash   `curl` GET of the layer piped through `sha256sum` (and through `openssl
#                  dgst -sha256`): receiving and hashing, nothing written;
#   disk           `dd conv=fdatasync` of as many bytes as the archive holds;
#   ferry export   `ferry export` of the image into a fresh archive (fsynced, every byte hashed
#                  before the rename).
#
# The goal (issue 18): ferry export at most 1.1x the slower of network+hash and disk. Also
# prints ferry's CPU seconds per GiB (user + system, /usr/bin/time) beside SHA-256 alone
# (`openssl speed`), and its peak RSS. Medians of RUNS (default 3) rounds after a warm-up.
# FERRY_BASELINE=PATH adds another ferry binary (an earlier build) to every round, as its own
# rows, so a change is measured before and after in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=${FERRY:-$PWD/target/release/ferry}  # FERRY: another build, to compare
big_mib=${BIG_MIB:-2048}
runs=${RUNS:-3}
bench_dir=${BENCH_DIR:-$PWD/bench/work}
mkdir -p "$bench_dir"
bench_dir=$(cd "$bench_dir" && pwd)
cargo build --quiet --release --bin ferry

work=$(mktemp -d "$bench_dir/blob.XXXXXX")
source scripts/registry.sh
registry_start "$work/registry"
trap 'registry_stop $REGISTRY_PID; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
host=127.0.0.1:$REGISTRY_PORT
base=http://$host/v2/big/one

echo "one image with a single ${big_mib} MiB layer: generating and pushing it" >&2
head -c $((big_mib * 1024 * 1024)) /dev/urandom >"$work/layer"
layer_size=$(stat -c %s "$work/layer")
layer_digest="sha256:$(sha256sum "$work/layer" | cut -d' ' -f1)"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$layer_digest" >"$work/config"
config_size=$(stat -c %s "$work/config")
config_digest="sha256:$(sha256sum "$work/config" | cut -d' ' -f1)"
push_blob() {  # FILE DIGEST
  local location
  location=$(curl -sf -X POST -D - -o /dev/null "$base/blobs/uploads/" | tr -d '\r' |
    awk 'tolower($1)=="location:"{print $2}')
  case "$location" in http*) ;; *) location="http://$host$location" ;; esac
  case "$location" in *\?*) location="$location&" ;; *) location="$location?" ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$1" "${location}digest=$2" -o /dev/null
}
push_blob "$work/layer" "$layer_digest"
push_blob "$work/config" "$config_digest"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest"
curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$work/manifest" "$base/manifests/1" -o /dev/null
rm -f "$work/layer"  # only the registry's copy is read from here on

archive=$work/export.tar
bench_name=bench-blob
source "$(dirname "$0")/bench-lib.sh"
baseline=${FERRY_BASELINE:-}
export_once() {  # [BINARY SUFFIX]: ferry by default; its CPU and RSS to cpu.ferry$SUFFIX, ...
  local before binary=${1:-$ferry} suffix=${2:-}
  rm -f "$archive"
  before=$(registry_cpu_seconds "$REGISTRY_PID")
  /usr/bin/time -o "$work/time.export" -f '%M %U %S' \
    "$binary" export -i "$host/big/one:1" -o "$archive" --registry-insecure -q || return 1
  echo "$(registry_cpu_seconds "$REGISTRY_PID") - $before" | bc -l >>"$work/cpu.registry$suffix"
  awk '{print $1}' "$work/time.export" >>"$work/rss.export$suffix"
  awk '{print $2 + $3}' "$work/time.export" >>"$work/cpu.ferry$suffix"
}
curl_sha256sum() { set -o pipefail; curl -sf "$base/blobs/$layer_digest" | sha256sum >/dev/null; }
curl_openssl() { set -o pipefail; curl -sf "$base/blobs/$layer_digest" | openssl dgst -sha256 >/dev/null; }
dd_once() {
  rm -f "$work/dd.out"
  dd if=/dev/zero of="$work/dd.out" bs=4M count="$dd_count" conv=fdatasync status=none
}

timed warmup export_once
archive_bytes=$(stat -c %s "$archive")
dd_count=$(((archive_bytes + 4194303) / 4194304))
timed warmup curl_sha256sum
timed warmup dd_once
: >"$work/cpu.ferry"; : >"$work/cpu.registry"; : >"$work/rss.export"
: >"$work/cpu.ferry.baseline"; : >"$work/cpu.registry.baseline"; : >"$work/rss.export.baseline"
[ -z "$baseline" ] || timed warmup export_once "$baseline" .baseline
for _ in $(seq "$runs"); do  # interleaved: every tool meets the same state of the machine
  timed export export_once
  [ -z "$baseline" ] || timed baseline export_once "$baseline" .baseline
  timed sha256sum curl_sha256sum
  timed openssl curl_openssl
  timed disk dd_once
done
rm -f "$work/dd.out" "$archive"

hash_rate=$(openssl speed -mr -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | awk -F: '/^\+F:/ {print $4}')
gib=$(echo "$layer_size / 1073741824" | bc -l)
mib=$(echo "$layer_size / 1048576" | bc -l)
net_s=$(median "$work/t.sha256sum")
openssl_s=$(median "$work/t.openssl")
[ "$(echo "$openssl_s < $net_s" | bc -l)" = 1 ] && net_s=$openssl_s
disk_s=$(median "$work/t.disk")
floor_s=$(echo "if ($net_s > $disk_s) $net_s else $disk_s" | bc -l)
cpu_ferry=$(median "$work/cpu.ferry")
printf '\nexport of one image with a single %.0f MiB layer, median of %d rounds, %s cores\n' "$mib" "$runs" "$(nproc)"
printf '%-34s %8s %10s %10s   %s\n' operation seconds MiB/s "vs floor" "every run"
runs_of() { sort -g "$work/t.$1" | xargs printf '%.2f '; }
row() {
  local s
  s=$(median "$work/t.$2")
  printf '%-34s %8.3f %10.0f %9.2fx   %s\n' "$1" "$s" "$(echo "$mib / $s" | bc -l)" "$(echo "$s / $floor_s" | bc -l)" "$(runs_of "$2")"
}
row "curl GET | sha256sum" sha256sum
row "curl GET | openssl dgst -sha256" openssl
row "disk (dd conv=fdatasync)" disk
row "ferry export" export
[ -z "$baseline" ] || row "ferry export (FERRY_BASELINE)" baseline
printf 'floor: the slower of network+hash (the faster pipe, %.3f s) and disk (%.3f s) = %.3f s\n' \
  "$net_s" "$disk_s" "$floor_s"
printf 'CPU per GiB: ferry %.2f s (the registry serving it %.2f s); SHA-256 alone %.2f s (openssl speed)\n' \
  "$(echo "$cpu_ferry / $gib" | bc -l)" "$(echo "$(median "$work/cpu.registry") / $gib" | bc -l)" \
  "$(echo "1073741824 / $hash_rate" | bc -l)"
if [ -n "$baseline" ]; then
  printf 'CPU per GiB of FERRY_BASELINE: %.2f s (the registry %.2f s), peak RSS %d KiB\n' \
    "$(echo "$(median "$work/cpu.ferry.baseline") / $gib" | bc -l)" \
    "$(echo "$(median "$work/cpu.registry.baseline") / $gib" | bc -l)" "$(max "$work/rss.export.baseline")"
fi
cpu_bound=$(echo "($cpu_ferry + $(median "$work/cpu.registry")) / $(nproc)" | bc -l)
printf 'CPU bound: ferry'"'"'s and the registry'"'"'s CPU over %d cores, %.3f s; ferry export takes %.2fx that\n' \
  "$(nproc)" "$cpu_bound" "$(echo "$(median "$work/t.export") / $cpu_bound" | bc -l)"
printf 'ferry peak RSS: %d KiB; goal: ferry export <= 1.1x the floor\n' "$(max "$work/rss.export")"
