. /job/workloads/lib.sh
# Lock conflicts between two mounts of the same export: the kernel grants
# local locks before it asks the server, so only locks taken through two
# different mounts (two 9P connections) prove that the server locks.
second_mount /mnt/b
A=$W/lockfile
B=/mnt/b/wl-$WL/lockfile
: >"$A"
check "second mount sees the file" test -e "$B"

# flock. The release FIFO exists before any holder starts: a holder whose
# `read` found no FIFO would exit at once and drop the lock before the checks.
mkfifo /tmp/flock-release
flock -x "$A" -c 'echo held >/tmp/flock-held; read x </tmp/flock-release' &
holder=$!
while [ ! -e /tmp/flock-held ]; do sleep 0.1; done
denied "flock -n -x while exclusive held on the other mount" flock -n -x "$B" true
denied "flock -n -s while exclusive held on the other mount" flock -n -s "$B" true
echo go >/tmp/flock-release
wait $holder
check "flock -n -x after release" flock -n -x "$B" true
flock -s "$A" -c 'echo held >/tmp/flock-held2; read x </tmp/flock-release' &
holder=$!
while [ ! -e /tmp/flock-held2 ]; do sleep 0.1; done
check "flock -n -s while shared held" flock -n -s "$B" true
denied "flock -n -x while shared held" flock -n -x "$B" true
echo go >/tmp/flock-release
wait $holder

# fcntl (POSIX) byte-range locks
python3 - "$A" "$B" <<'PY'
import fcntl, os, struct, subprocess, sys
a, b = sys.argv[1:]
holder = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 100, 0)       # bytes 0..99
print("locked", flush=True)
sys.stdin.readline()
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
print("released", flush=True)
sys.stdin.readline()
""", a], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert holder.stdout.readline() == b"locked\n"
fd = os.open(b, os.O_RDWR)
def conflict(what, length, start, kind=fcntl.LOCK_EX):
    try:
        fcntl.lockf(fd, kind | fcntl.LOCK_NB, length, start)
    except OSError as e:
        assert e.errno in (11, 13), e
    else:
        sys.exit(f"fcntl: {what} granted on the other mount")
conflict("conflicting write lock", 100, 0)
conflict("overlapping range", 10, 50)
conflict("read lock over a write lock", 10, 0, fcntl.LOCK_SH)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 200)   # disjoint range is free
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 200)
# F_GETLK (Tgetlock) on the other mount reports the holder's lock
req = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 0, 100, 0)
try:
    got = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, req))
    getlk = None if got[0] == fcntl.F_WRLCK else f"F_GETLK does not report the conflict: {got}"
except OSError as e:
    getlk = f"F_GETLK failed: {e}"
holder.stdin.write(b"go\n"); holder.stdin.flush()
assert holder.stdout.readline() == b"released\n"
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 100, 0)     # free after release
holder.stdin.write(b"go\n"); holder.stdin.flush()
holder.wait()
fcntl.lockf(fd, fcntl.LOCK_UN, 100, 0)
os.close(fd)
if getlk:
    sys.exit(getlk)     # last, so that the checks above are reported first
print("fcntl ok")
PY
