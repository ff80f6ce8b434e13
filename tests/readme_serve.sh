#!/usr/bin/env bash
# Runs the README's first set-up command (the block marked `ci: setup-serve`)
# exactly as written. It ends in a foreground `ninep serve` on the default
# store and address (tcp:127.0.0.1:5640), so it runs in the background here:
# wait for the listener, make one request with diod's independent diodls,
# stop the server with SIGTERM and require exit status 0.
#
# Usage: bash tests/readme_serve.sh     (from .ci/run; leaves .venv and ./ninep-data)
set -euo pipefail
cd "$(dirname "$0")/.."

step="read the README's set-up command"
fail() { echo "README set-up check FAILED at step: $step: $*" >&2; exit 1; }
cmd=$(python3 tests/readme_blocks.py setup-serve) || fail "no block"
echo "README set-up command: $cmd"
case "$cmd" in *"ninep serve"*) ;; *) fail "it does not end in 'ninep serve'" ;; esac

step="the default address is free"
if python3 -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex(("127.0.0.1", 5640)) != 0)'; then
  fail "something already listens on 127.0.0.1:5640 (the README's default): stop it and run again"
fi

step="run it"
log=$(mktemp /tmp/readme-serve.XXXXXX)
bash -c "$cmd" >"$log" 2>&1 &
pid=$!
server=""
trap '[ -z "$server" ] || kill -KILL "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1200); do   # pip install runs first: allow it 10 minutes
  grep -q '^listening tcp:' "$log" && break
  kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; fail "the command exited before the server listened"; }
  sleep 0.5
done
address=$(sed -n 's/^listening tcp:\(.*\)$/\1/p' "$log" | head -1)
[ -n "$address" ] || { tail -30 "$log" >&2; fail "no listening line after 10 minutes"; }
# The server is the `ninep serve` process: the shell itself, if it exec'd the
# last command, or its child.
if tr '\0' ' ' </proc/$pid/cmdline | grep -q 'ninep serve'; then server=$pid; else server=$(pgrep -P "$pid" -f 'ninep serve'); fi
[ -n "$server" ] || fail "cannot find the ninep serve process"
echo "ninep serve (pid $server) listens on $address"

step="one request (diodls of the export)"
command -v diodls >/dev/null || PATH=$PATH:/usr/sbin
diodls -s "$address" -a main / >/dev/null || fail "diodls -s $address -a main / failed"

step="SIGTERM"
kill -TERM "$server"
rc=0
wait "$pid" || rc=$?
server=""
[ $rc -eq 0 ] || { tail -30 "$log" >&2; fail "ninep serve exited $rc after SIGTERM (want 0)"; }
rm -f "$log"
echo "README set-up command: served, answered diodls, exited 0 on SIGTERM"
