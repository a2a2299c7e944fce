#!/usr/bin/env bash
# `make bench`, registry part: one blob of BLOB_MIB (default 256) MiB of random bytes, pushed
# and pulled against a local docker-registry (plain HTTP on 127.0.0.1) by curl and by ferry's
# client (examples/registry_bench.rs, hashing through the verifying reader), in the same run.
# Reports medians of RUNS runs, the ratio to curl, and ferry's peak RSS. The GETs run round by
# round (curl, ferry, the raw socket GET, the baseline), so load from elsewhere falls on all of
# them alike. The raw socket GET (registry_bench raw-get) is no client: the same GET read straight
# into the read-ahead buffers and hashed, the bound of removing the HTTP client's copy (issue 18).
# FERRY_BASELINE_BENCH=PATH adds an earlier build of registry_bench as its own GET row.
set -euo pipefail
cd "$(dirname "$0")/.."
blob_mib=${BLOB_MIB:-256}
runs=${RUNS:-5}
bench=$PWD/target/release/examples/registry_bench
baseline=${FERRY_BASELINE_BENCH:-}
cargo build --quiet --release --example registry_bench

work=$(mktemp -d -t ferry-bench-registry.XXXXXX)
source scripts/registry.sh
registry_start "$work"
port=$REGISTRY_PORT
trap 'registry_stop $REGISTRY_PID; rm -rf "$work"' EXIT

head -c $((blob_mib * 1024 * 1024)) /dev/urandom >"$work/blob"
digest="sha256:$(sha256sum "$work/blob" | cut -d' ' -f1)"
size=$(stat -c %s "$work/blob")
base="http://127.0.0.1:$port/v2"

curl_put() {  # POST then PUT ?digest, body streamed from the file with its Content-Length
  local repo=$1 location
  location=$(curl -sf -X POST -D - -o /dev/null "$base/$repo/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  case "$location" in http*) ;; *) location="http://127.0.0.1:$port$location" ;; esac
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' -T "$work/blob" "$location&digest=$digest" -o /dev/null
}
delete_blob() { curl -sf -X DELETE "$base/$1/blobs/$digest" -o /dev/null || true; }

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_put() {  # tool repo
  local start end
  delete_blob "$2"
  start=$(now)
  if [ "$1" = curl ]; then curl_put "$2"; else "$bench" put "127.0.0.1:$port" "$2" "$work/blob" "$digest"; fi
  end=$(now)
  echo "$end - $start" | bc -l
}
time_get() {  # curl | ferry | raw | baseline
  local start end
  start=$(now)
  case $1 in
    curl) curl -sf -o /dev/null "$base/bench/blobs/$digest" ;;
    ferry) "$bench" get "127.0.0.1:$port" bench "$digest" "$size" ;;
    raw) "$bench" raw-get "127.0.0.1:$port" bench "$digest" "$size" ;;
    baseline) "$baseline" get "127.0.0.1:$port" bench "$digest" "$size" ;;
  esac
  end=$(now)
  echo "$end - $start" | bc -l >>"$work/get.$1"
}

curl_put bench  # the blob the GETs read
get_tools="curl ferry raw${baseline:+ baseline}"
for _ in $(seq "$runs"); do for tool in $get_tools; do time_get "$tool"; done; done
curl_get=$(median <"$work/get.curl")
ferry_get=$(median <"$work/get.ferry")
raw_get=$(median <"$work/get.raw")
curl_up=$(for i in $(seq "$runs"); do time_put curl "up-curl-$i"; done | median)
ferry_up=$(for i in $(seq "$runs"); do time_put ferry "up-ferry-$i"; done | median)
# SHA-256 alone: the fastest implementation here (openssl speed, one core, 1 MiB blocks, no
# I/O), as seconds for this blob. No verified GET can be quicker, however fast the network.
hash_rate=$(openssl speed -mr -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | awk -F: '/^\+F:/ {print $4}')
hash_s=$(echo "$size / $hash_rate" | bc -l)
# The CPU a plain GET costs this machine (curl's and the registry's): with the hashing added,
# that work spread perfectly over every core is the other bound on a verified GET here.
get_cpu=$(for _ in $(seq "$runs"); do
  before=$(registry_cpu_seconds "$REGISTRY_PID")
  client=$(/usr/bin/time -f '%U %S' curl -sf -o /dev/null "$base/bench/blobs/$digest" 2>&1 | awk '{print $1 + $2}')
  echo "$(registry_cpu_seconds "$REGISTRY_PID") - $before + $client" | bc -l
done | median)
cores=$(nproc)
work_s=$(echo "($get_cpu + $hash_s) / $cores" | bc -l)
rss_get=$(/usr/bin/time -f %M "$bench" get "127.0.0.1:$port" bench "$digest" "$size" 2>&1 >/dev/null | tail -n 1)
delete_blob rss
rss_put=$(/usr/bin/time -f %M "$bench" put "127.0.0.1:$port" rss "$work/blob" "$digest" 2>&1 >/dev/null | tail -n 1)

mib=$(echo "$size / 1048576" | bc -l)
printf '\nregistry blob transfer, %.0f MiB, median of %d runs (local docker-registry, plain HTTP)\n' "$mib" "$runs"
printf '%-28s %8s %10s %10s\n' operation seconds MiB/s "vs curl"
row() { printf '%-28s %8.3f %10.0f %9.2fx\n' "$1" "$2" "$(echo "$mib / $2" | bc -l)" "$(echo "$3 / $2" | bc -l)"; }
row "curl GET" "$curl_get" "$curl_get"
row "ferry GET (hashing)" "$ferry_get" "$curl_get"
[ -z "$baseline" ] || row "baseline ferry GET" "$(median <"$work/get.baseline")" "$curl_get"
row "raw socket GET (hashing)" "$raw_get" "$curl_get"
row "sha256 alone (openssl speed)" "$hash_s" "$curl_get"
row "curl POST+PUT" "$curl_up" "$curl_up"
row "ferry upload (hashing)" "$ferry_up" "$curl_up"
printf 'ferry client peak RSS: GET %d KiB, upload %d KiB\n' "$rss_get" "$rss_put"
bound_s=$(echo "if ($work_s > $hash_s) $work_s else $hash_s" | bc -l)
printf 'bound on a verified GET here: sha256 alone %.3f s; curl'"'"'s and the registry'"'"'s CPU (%.2f s) plus\n' "$hash_s" "$get_cpu"
printf '  the hashing, over %d cores, %.3f s: at best %.2fx curl; ferry GET is at %.2fx that bound\n' \
  "$cores" "$work_s" "$(echo "$curl_get / $bound_s" | bc -l)" "$(echo "$ferry_get / $bound_s" | bc -l)"
