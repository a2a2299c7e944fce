# Sourced by the demo and bench scripts: one local docker-registry (CNCF distribution) on
# 127.0.0.1, plain HTTP, deletes enabled, storing under a directory of the caller's.
#
#   registry_start DIR [PORT]   start it (on a free port unless PORT is given) and wait until
#                               /v2/ answers; sets REGISTRY_PID and REGISTRY_PORT; on failure
#                               prints the registry's log and exits 1
#   registry_stop PID           stop it and reap it (never fails)
#   registry_cpu_seconds PID    the user + system CPU seconds it has used so far (benches)
#
# Named registries (benches), each storing in $work/NAME/data, its pid in reg_pid[NAME] and its
# port in reg_port[NAME] (chosen once per NAME and kept across restarts):
#   start_registry NAME, stop_registry NAME, wipe_registry NAME (stop, empty its storage,
#   start again on the same port), stop_registries (every one still running; for an EXIT trap),
#   clean_up_on_exit (when the script ends or is interrupted: stop them all and remove $work)

registry_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

registry_start() {
  local dir=$1
  REGISTRY_PORT=${2:-$(registry_free_port)}
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<YAML
version: 0.1
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REGISTRY_PORT
log:
  level: error
YAML
  docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$REGISTRY_PORT/v2/" >/dev/null && return 0
    sleep 0.1
  done
  echo "docker-registry in $dir did not start:" >&2
  cat "$dir/registry.log" >&2
  exit 1
}

registry_stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

registry_cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat"
}

declare -A reg_pid=() reg_port=()

start_registry() {
  local name=$1
  registry_start "$work/$name" "${reg_port[$name]:-}"
  reg_port[$name]=$REGISTRY_PORT
  reg_pid[$name]=$REGISTRY_PID
}

stop_registry() {
  registry_stop "${reg_pid[$1]}"
  unset "reg_pid[$1]"
}

wipe_registry() { stop_registry "$1"; rm -rf "${work:?}/$1/data"; start_registry "$1"; }

stop_registries() {
  local name
  for name in "${!reg_pid[@]}"; do registry_stop "${reg_pid[$name]}"; done
}

clean_up_on_exit() {
  trap 'stop_registries; rm -rf "${work:?}"' EXIT
  trap 'exit 130' INT TERM
}
