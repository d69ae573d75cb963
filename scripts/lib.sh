# shellcheck shell=bash
# Shared by scripts/main and scripts/stop: where the daemon lives and how to reach it.
SOCK=${DOCKYARD_SOCK:-/run/dockyard.sock}
PIDFILE=${DOCKYARD_PIDFILE:-/run/dockyard-main.pid}
LOG=${DOCKYARD_LOG:-/var/log/dockyard.log}
DY=${DY:-.venv/bin/dockyard}
export DOCKER_HOST=unix://$SOCK

say() { printf '==> %s\n' "$*"; }

# daemon_up: true when the API answers /_ping on our socket
daemon_up() { [ -S "$SOCK" ] && [ "$(curl -s -m 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]; }

daemon_pid() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"; }
