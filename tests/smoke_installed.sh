#!/usr/bin/env bash
# Smoke check of the installed product: what a user gets from `pip install`.
#
# Builds an sdist and a wheel from the checkout's tracked files, checks that
# the wheel holds every tracked module, installs it into a fresh virtualenv
# outside the source tree, and drives the installed `ninep` from a directory
# outside the source tree, so that nothing can be imported from the checkout:
# serve, list with diod's independent diodls, write + fsync + read back with
# the installed client, snapshot and export through the running server,
# SIGTERM (exit 0) and a second start that still sees the file.
#
# Usage: bash tests/smoke_installed.sh        (run by .ci/run before the tests)
# On failure it exits non-zero and names the step that broke.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d /tmp/ninep-smoke.XXXXXX)
step="start"
server_pid=""

cleanup() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ $status -ne 0 ]; then
    echo "SMOKE FAILED at step: $step (exit $status); files kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

begin() { step=$1; echo "== smoke: $step"; }
die() { echo "SMOKE FAILED at step: $step: $*" >&2; exit 1; }

begin "copy the tracked files (a clean checkout)"
mkdir "$work/src"
git -C "$repo" ls-files -z | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$work/src"

begin "build an sdist and a wheel"
"$python" -m venv "$work/tools"
"$work/tools/bin/pip" install -q --upgrade pip build
# python -m build makes the sdist, then the wheel from the unpacked sdist:
# a file missing from the sdist breaks the wheel too.
"$work/tools/bin/python" -m build -q --outdir "$work/dist" "$work/src" >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; die "python -m build failed"; }
wheel=$(ls "$work"/dist/*.whl)
ls "$work"/dist/*.tar.gz >/dev/null || die "no sdist was built"

begin "the wheel holds every tracked module of ninep_server and cas"
tracked=$(git -C "$repo" ls-files 'ninep_server/*.py' 'cas/*.py')
missing=$("$work/tools/bin/python" - "$wheel" $tracked <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
missing = [m for m in sys.argv[2:] if m not in names]
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    missing.append("LICENSE")
print(" ".join(missing))
PY
)
[ -z "$missing" ] || die "the wheel lacks: $missing"

begin "install the wheel into a fresh virtualenv"
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --upgrade pip
"$work/venv/bin/pip" install -q "$wheel"
ninep=$work/venv/bin/ninep
cd "$work"   # outside the source tree: nothing can come from the checkout
origin=$("$work/venv/bin/python" -c 'import ninep_server, cas; print(ninep_server.__file__, cas.__file__)')
case "$origin" in
  "$work/venv/"*" $work/venv/"*) ;;
  *) die "ninep_server/cas imported from outside the virtualenv: $origin" ;;
esac

begin "ninep --version"
"$ninep" --version | grep -Eq '^ninep [0-9]+\.[0-9]+' || die "unexpected --version output"

store=$work/store
start_server() {
  "$ninep" serve --store "$store" --listen tcp:127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
  server_pid=$!
  port=""
  for _ in $(seq 300); do
    port=$(sed -n 's/^listening tcp:127\.0\.0\.1:\([0-9]*\)$/\1/p' "$work/serve.out")
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.err" >&2; die "ninep serve exited before listening"; }
    sleep 0.1
  done
  [ -n "$port" ] || die "ninep serve printed no listening line"
}
stop_server() {
  kill -TERM "$server_pid"
  rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
  [ $rc -eq 0 ] || { tail -20 "$work/serve.err" >&2; die "ninep serve exited $rc after SIGTERM (want 0)"; }
}

begin "ninep serve --store STORE --listen tcp:127.0.0.1:0"
start_server

begin "the installed client writes a file with fsync and reads it back"
"$work/venv/bin/python" - "$port" <<'PY'
import sys, trio
from ninep_server.client import connect

async def main(port):
    async with connect(f"tcp:127.0.0.1:{port}", uname=b"root", n_uname=0) as c:
        await c.makedirs(b"smoke")
        await c.write_file(b"smoke/hello.txt", b"hello from the wheel\n", fsync=True)
        assert await c.read_file(b"smoke/hello.txt") == b"hello from the wheel\n"

trio.run(main, int(sys.argv[1]))
PY

begin "diodls (Debian's diod, an independent client) lists the export"
command -v diodls >/dev/null || PATH=$PATH:/usr/sbin
diodls -s "127.0.0.1:$port" -a main / >"$work/diodls.out" || die "diodls failed"
grep -qx "smoke" "$work/diodls.out" || die "diodls does not list 'smoke': $(cat "$work/diodls.out")"

begin "ninep snapshot create main@smoke (through the running server)"
[ -S "$store/admin.sock" ] || die "the server has no admin socket"
"$ninep" snapshot create main@smoke --store "$store" | grep -qx "created main@smoke" || die "unexpected output"

begin "ninep export main DEST (the live tree, through the running server)"
"$ninep" export main "$work/dest" --store "$store" >/dev/null
cmp -s "$work/dest/smoke/hello.txt" <(printf 'hello from the wheel\n') || die "exported file differs"

begin "ninep export main@smoke DEST2 (a snapshot, through the running server)"
"$ninep" export main@smoke "$work/dest2" --store "$store" >/dev/null
cmp -s "$work/dest2/smoke/hello.txt" <(printf 'hello from the wheel\n') || die "exported file differs"

begin "SIGTERM stops the server with exit status 0"
stop_server

begin "a second start on the same store sees the file"
start_server
diodcat -s "127.0.0.1:$port" -a main smoke/hello.txt >"$work/cat.out" || die "diodcat failed"
cmp -s "$work/cat.out" <(printf 'hello from the wheel\n') || die "the file read back differs after restart"
stop_server

echo "smoke: all steps passed"
