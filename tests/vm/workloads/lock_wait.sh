. /job/workloads/lib.sh
# A blocking lock on one mount is granted as soon as the holder on the other
# mount releases it: well under the v9fs client's 30 s retry interval, which
# is what a server that answers "blocked" instead of waiting would cost.
# Every step waits for the one before it: the holder keeps its lock until it
# is told to release, so no outcome depends on how the scheduler runs them.
second_mount /mnt/b
A=$W/lockfile
B=/mnt/b/wl-$WL/lockfile
: >"$A"
LIMIT=10

mkfifo /tmp/lw-release
flock -x "$A" -c 'echo held >/tmp/lw-held; read x </tmp/lw-release' &
holder=$!
while [ ! -e /tmp/lw-held ]; do sleep 0.1; done
( flock -x -w 90 "$B" true && date +%s.%N >/tmp/lw-granted ) &
waiter=$!
sleep 1
[ ! -e /tmp/lw-granted ] || fail "blocking flock granted while the other mount held the lock"
t0=$(date +%s.%N)
echo go >/tmp/lw-release
wait $holder
wait $waiter || fail "blocking flock never granted"
t1=$(cat /tmp/lw-granted)
waited=$(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }')
echo "flock: granted ${waited}s after the holder released it"
awk -v w="$waited" -v l=$LIMIT 'BEGIN { exit !(w < l) }' || fail "blocking flock took ${waited}s after release"

python3 - "$A" "$B" "$LIMIT" <<'PY'
import fcntl, os, subprocess, sys, threading, time
a, b, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
holder = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)
print("locked", flush=True)
sys.stdin.readline()
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
print("released", flush=True)
sys.stdin.readline()
""", a], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert holder.stdout.readline() == b"locked\n"
fd = os.open(b, os.O_RDWR)
granted = []
waiter = threading.Thread(target=lambda: (fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0), granted.append(time.monotonic())), daemon=True)
waiter.start()
time.sleep(1)
assert not granted, "blocking fcntl lock granted while the other mount held it"
t0 = time.monotonic()
holder.stdin.write(b"go\n"); holder.stdin.flush()
assert holder.stdout.readline() == b"released\n"
waiter.join(90)
assert granted, "blocking fcntl lock never granted"
waited = granted[0] - t0
print(f"fcntl: granted {waited:.1f}s after the holder released it")
holder.stdin.write(b"go\n"); holder.stdin.flush()
holder.wait()
assert waited < limit, f"blocking fcntl lock took {waited:.1f}s after release"
PY
