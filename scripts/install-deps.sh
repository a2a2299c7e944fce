#!/usr/bin/env bash
# Installs, with apt-get, the real components ferry's tests and demo use, when they are missing:
# skopeo and umoci (independent readers of our archives), docker-registry (CNCF distribution),
# openssl (certificates, and the bench's hashing baseline) and GNU time (peak RSS in the bench).
set -euo pipefail

need=()
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/time ] || need+=(time)
command -v tar >/dev/null 2>&1 || need+=(tar)
command -v bc >/dev/null 2>&1 || need+=(bc)
command -v python3 >/dev/null 2>&1 || need+=(python3)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${need[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
