. /job/workloads/lib.sh
# A blocking lock on one mount is granted as soon as the holder on the other
# mount releases it: well under the v9fs client's 30 s retry interval, which
# is what a server that answers "blocked" instead of waiting would cost.
second_mount /mnt/b
A=$W/lockfile
B=/mnt/b/wl-$WL/lockfile
: >"$A"
LIMIT=10

flock -x "$A" -c 'echo held >/tmp/lw-held; sleep 2' &
holder=$!
while [ ! -e /tmp/lw-held ]; do sleep 0.1; done
t0=$(date +%s.%N)
flock -x -w 90 "$B" true || fail "blocking flock never granted"
t1=$(date +%s.%N)
wait $holder
waited=$(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }')
echo "flock: granted after ${waited}s (holder kept it ~2s)"
awk -v w="$waited" -v l=$LIMIT 'BEGIN { exit !(w < l) }' || fail "blocking flock took ${waited}s"

python3 - "$A" "$B" "$LIMIT" <<'PY'
import fcntl, os, subprocess, sys, time
a, b, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
holder = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
print("locked", flush=True)
time.sleep(2)
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
time.sleep(1)
""", a], stdout=subprocess.PIPE)
assert holder.stdout.readline() == b"locked\n"
fd = os.open(b, os.O_RDWR)
t0 = time.monotonic()
fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
waited = time.monotonic() - t0
print(f"fcntl: granted after {waited:.1f}s (holder kept it ~2s)")
holder.wait()
assert waited < limit, f"blocking fcntl lock took {waited:.1f}s"
PY
