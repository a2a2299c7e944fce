#!/usr/bin/env bash
# `make bench`, many-blobs part (issue 14 item 1): importing a set of many small blobs, where
# the registry's request rate is the bound, so the cost is requests per blob (spec/cli.md
# "import" IM-2, IM-3), beside imgpkg on the same set in the same run.
#
# The set: 10 images x BENCH_MANY_LAYERS (default 1000) small distinct layers (about 2 KiB
# each) plus their configs, generated here as an OCI layout, imported with ferry into a local
# source registry (one repository) and named by one ImagesLock. From the source:
#   ferry's archive    `ferry export --lock`;
#   imgpkg's tarball   `imgpkg copy --lock ... --to-tar` of the same lock.
# Then, against a target docker-registry (plain HTTP on 127.0.0.1), in interleaved rounds:
#   fresh import       into a wiped target: `ferry import` of ferry's archive, `imgpkg copy
#                      --tar` of imgpkg's (IMGPKG_FRESH_RUNS of them, default 1: imgpkg takes
#                      minutes here), and with FERRY_BASELINE=PATH an earlier ferry's import of
#                      the same archive as its own row (goal: ferry <= 0.75x of it);
#   re-import          everything already present, each tool after its own warm-up (goal:
#                      ferry <= 1.5x imgpkg);
#   upload floor       a POST and a PUT per blob (python, kept-alive connections, as many at once
#                      as ferry's workers) into a wiped target: what a missing blob costs at least;
#   HEAD, POST floors  one `curl --parallel` of a HEAD per blob against the full target, and
#                      one of as many upload-opening POSTs, as many at once as ferry's default
#                      workers: the registry's rate for the request IM-3 saves and for the one
#                      it keeps.
# Reports medians of RUNS rounds (default 2) with every run, and the load average at the start
# and the end (other work on the machine moves these figures). Keep BENCH_MANY_LAYERS small
# (e.g. 200) for a quick look; the default run takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ferry=${FERRY:-$PWD/target/release/ferry}
imgpkg=${IMGPKG:-../shared/tools/imgpkg}
baseline=${FERRY_BASELINE:-}
layers=${BENCH_MANY_LAYERS:-1000}
images=10
runs=${RUNS:-2}
imgpkg_fresh_runs=${IMGPKG_FRESH_RUNS:-1}
bench_dir=${BENCH_DIR:-$PWD/bench/work}
workers=$(($(nproc) * 2)); [ "$workers" -ge 4 ] || workers=4
mkdir -p "$bench_dir"
bench_dir=$(cd "$bench_dir" && pwd)
imgpkg=$(cd "$(dirname "$imgpkg")" && pwd)/$(basename "$imgpkg")
[ -x "$imgpkg" ] || { echo "bench-many: imgpkg not found at $imgpkg (set IMGPKG)" >&2; exit 1; }

cargo build --quiet --release --bin ferry

work=$(mktemp -d "$bench_dir/many.XXXXXX")
source scripts/registry.sh
clean_up_on_exit
bench_name=bench-many
source "$(dirname "$0")/bench-lib.sh"

# --- the set ---------------------------------------------------------------------------------
echo "generating $images images x $layers layers" >&2
python3 - "$work/layout" "$images" "$layers" <<'PY'
import hashlib, json, os, sys, tarfile

out, images, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

def put(data, media_type):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, digest[7:]), "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": digest, "size": len(data)}

def small_tar(name, text):
    # One file, without tarfile's padding to a 10 KiB record: header, data, two zero blocks.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(text), 0o644, 0
    return info.tobuf(tarfile.USTAR_FORMAT) + text + b"\0" * (-len(text) % 512) + b"\0" * 1024

entries = []
for i in range(images):
    descriptors, diff_ids = [], []
    for j in range(layers):
        layer = small_tar(f"many/{i}/{j}.txt", f"image {i} layer {j}\n".encode() * 8)
        descriptors.append(put(layer, "application/vnd.oci.image.layer.v1.tar"))
        diff_ids.append(descriptors[-1]["digest"])
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}, sort_keys=True).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": put(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": descriptors}, sort_keys=True).encode()
    entry = put(manifest, "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": f"many-{i}"}
    entries.append(entry)
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": entries}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(out, "..", "digests.txt"), "w") as f:
    f.write("".join(e["digest"] + "\n" for e in entries))
PY
blob_count=$((images * (layers + 1)))

start_registry source
src=127.0.0.1:${reg_port[source]}
echo "seeding $src/many/images with $blob_count blobs" >&2
"$ferry" export -q --oci-layout "$work/layout" -o "$work/seed.tar"
"$ferry" import -q "$work/seed.tar" --to-repo "$src/many/images" --registry-insecure
{
  printf -- '---\napiVersion: imgpkg.carvel.dev/v1alpha1\nkind: ImagesLock\nimages:\n'
  sed "s|^|- image: $src/many/images@|" "$work/digests.txt"
} >"$work/images.lock.yml"
echo "exporting with ferry and with imgpkg" >&2
"$ferry" export -q --lock "$work/images.lock.yml" -o "$work/ferry.tar" --registry-insecure
"$imgpkg" copy --lock "$work/images.lock.yml" --to-tar "$work/imgpkg.tar" --registry-insecure >"$work/imgpkg-export.log" 2>&1 ||
  { cat "$work/imgpkg-export.log" >&2; exit 1; }
stop_registry source
rm -rf "$work/layout" "$work/seed.tar" "${work:?}/source"

# --- imports ---------------------------------------------------------------------------------
start_registry target
dst=127.0.0.1:${reg_port[target]}
repo=$dst/mirror/many
ferry_import() { "$1" import -q "$work/ferry.tar" --to-repo "$repo" --registry-insecure; }
imgpkg_import() { "$imgpkg" copy --tar "$work/imgpkg.tar" --to-repo "$repo" --registry-insecure; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
echo "fresh imports: $runs rounds (imgpkg in $imgpkg_fresh_runs of them), target wiped before each" >&2
for round in $(seq "$runs"); do
  wipe_registry target
  timed fresh ferry_import "$ferry"
  if [ -n "$baseline" ]; then
    wipe_registry target
    timed fresh_baseline ferry_import "$baseline"
  fi
  if [ "$round" -le "$imgpkg_fresh_runs" ]; then
    wipe_registry target
    timed fresh_imgpkg imgpkg_import
  fi
done

echo "re-imports: $((runs + 1)) rounds, everything present" >&2
wipe_registry target
timed warmup ferry_import "$ferry"
timed warmup imgpkg_import
for _ in $(seq $((runs + 1))); do
  timed reimport ferry_import "$ferry"
  timed reimport_imgpkg imgpkg_import
  if [ -n "$baseline" ]; then timed reimport_baseline ferry_import "$baseline"; fi
done

# The registry's request rate: a HEAD per blob over reused connections, $workers at a time.
awk -v base="http://$dst/v2/mirror/many/blobs/" '{print "url = \"" base $1 "\"\noutput = \"/dev/null\""}' \
  <(find "$work/target/data/docker/registry/v2/repositories/mirror/many/_layers/sha256" -mindepth 1 \
    -maxdepth 1 -printf 'sha256:%f\n') >"$work/heads.curl"
heads=$(grep -c "^url" "$work/heads.curl")
head_all() { curl -sf -I --parallel --parallel-max "$workers" -K "$work/heads.curl"; }
# And of the request that opens an upload (what a missing blob costs beside its PUT): a POST
# per blob, each opening a session that is never used (the target is thrown away after).
awk -v url="http://$dst/v2/mirror/many/blobs/uploads/" \
  '/^url/ {print "url = \"" url "\"\noutput = \"/dev/null\"\nrequest = \"POST\"\ndata = \"\""}' \
  "$work/heads.curl" >"$work/posts.curl"
post_all() { curl -sf --parallel --parallel-max "$workers" -K "$work/posts.curl"; }
timed warmup head_all
for _ in $(seq $((runs + 1))); do
  timed heads head_all
  timed posts post_all
done

# The upload floor: a POST and a PUT per blob and nothing else (what IM-3 leaves a missing blob
# to cost), over kept-alive connections, $workers at a time, into a wiped target. The blobs are
# the target's own files (the layout is gone by now).
cp -r "$work/target/data/docker/registry/v2/blobs/sha256" "$work/floor-blobs"
upload_all() {
  python3 - "$dst" "$workers" "$work/floor-blobs" <<'PY'
import http.client, os, sys, threading
host, workers, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
blobs = sorted(("sha256:" + os.path.basename(d), os.path.join(d, "data"))
               for d, _, files in os.walk(root) if "data" in files)
take, lock = iter(blobs), threading.Lock()
def upload():
    conn = http.client.HTTPConnection(host)
    while True:
        with lock:
            item = next(take, None)
        if item is None:
            return
        digest, path = item
        conn.request("POST", "/v2/mirror/many/blobs/uploads/", body=b"")
        answer = conn.getresponse(); answer.read()
        assert answer.status == 202, answer.status
        location = answer.getheader("Location")
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        with open(path, "rb") as f:
            body = f.read()
        conn.request("PUT", location + ("&" if "?" in location else "?") + "digest=" + digest, body=body,
                     headers={"Content-Type": "application/octet-stream"})
        answer = conn.getresponse(); answer.read()
        assert answer.status == 201, answer.status
threads = [threading.Thread(target=upload) for _ in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
PY
}
echo "upload floor: $runs rounds of a POST and a PUT per blob into a wiped target" >&2
for _ in $(seq "$runs"); do
  wipe_registry target
  timed uploads upload_all
done

# --- report ----------------------------------------------------------------------------------
runs_of() { sort -g "$work/t.$1" | xargs printf '%.2f '; }
ratio() { echo "$(median "$work/t.$1") / $(median "$work/t.$2")" | bc -l; }
head_s=$(median "$work/t.heads")
rate=$(echo "$heads / $head_s" | bc -l)
printf '\nimport of %d images x %d small layers (%d blobs); ferry archive %.1f MiB, imgpkg tarball %.1f MiB\n' \
  "$images" "$layers" "$blob_count" "$(echo "$(stat -c %s "$work/ferry.tar") / 1048576" | bc -l)" \
  "$(echo "$(stat -c %s "$work/imgpkg.tar") / 1048576" | bc -l)"
printf 'medians, %s cores, local docker-registry (plain HTTP), %d workers; load average (1, 5, 15 min)\n' \
  "$(nproc)" "$workers"
printf 'at the start %s, at the end %s\n' "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-40s %8s %10s   %s\n' operation seconds blobs/s "every run"
row() {  # NAME LABEL
  local s
  s=$(median "$work/t.$2")
  printf '%-40s %8.2f %10.0f   %s\n' "$1" "$s" "$(echo "$blob_count / $s" | bc -l)" "$(runs_of "$2")"
}
row "ferry import, fresh" fresh
[ -z "$baseline" ] || row "FERRY_BASELINE import, fresh" fresh_baseline
row "imgpkg copy --tar, fresh" fresh_imgpkg
row "ferry import, everything present" reimport
[ -z "$baseline" ] || row "FERRY_BASELINE import, everything present" reimport_baseline
row "imgpkg copy --tar, everything present" reimport_imgpkg
printf '%-40s %8.2f %10.0f   %s\n' "HEAD floor (curl, $heads HEADs)" "$head_s" "$rate" "$(runs_of heads)"
post_s=$(median "$work/t.posts")
printf '%-40s %8.2f %10.0f   %s\n' "POST floor (curl, $heads upload starts)" "$post_s" "$(echo "$heads / $post_s" | bc -l)" \
  "$(runs_of posts)"
printf 'bound: the registry answers about %.0f HEADs/s and %.0f upload-opening POSTs/s here; a missing\n' \
  "$rate" "$(echo "$heads / $post_s" | bc -l)"
printf '  blob costs a POST and a PUT (IM-3; earlier a HEAD too): the HEAD saved is worth %.1f s for\n' \
  "$(echo "$blob_count / $rate" | bc -l)"
printf '  %d blobs, the POSTs alone take %.1f s (docker-registry writes and syncs a file per upload start)\n' \
  "$blob_count" "$(echo "$blob_count * $post_s / $heads" | bc -l)"
row "upload floor (python, POST+PUT per blob)" uploads
printf 'fresh: ferry %.2fx imgpkg' "$(ratio fresh fresh_imgpkg)"
[ -z "$baseline" ] || printf ', %.2fx FERRY_BASELINE (goal <= 0.75x)' "$(ratio fresh fresh_baseline)"
printf '\nre-import: ferry %.2fx imgpkg (goal <= 1.5x)\n' "$(ratio reimport reimport_imgpkg)"
printf 'fresh: ferry %.2fx the upload floor (a POST and a PUT per blob, nothing read, hashed or checked)\n' \
  "$(ratio fresh uploads)"
