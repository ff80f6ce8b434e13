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

# flock on read-only and write-only opens: Linux allows flock(LOCK_EX) on an
# O_RDONLY descriptor and LOCK_SH on an O_WRONLY one, and so on a read-only
# export and inside a snapshot (flock is advisory). Each holder below takes
# its lock on one mount and says so through a marker file; its release FIFO
# exists before it starts; the checks run on the other mount only after the
# marker appears. The holder is the process that called flock(2) and stays
# alive until released: v9fs turns flock into a POSIX lock owned by the
# calling process (fs/9p/vfs_file.c, v9fs_file_flock_dotl), so `flock FD` in
# a child that exits would drop it.
hold() {   # hold TAG FLOCK_OPT r|w FILE: hold the lock in the background
    local tag=$1 opt=$2 how=$3 file=$4
    mkfifo "/tmp/lk-rel-$tag"
    python3 - "$opt" "$how" "$file" "/tmp/lk-held-$tag" "/tmp/lk-rel-$tag" <<'PY' &
import fcntl, os, sys
opt, how, path, held, release = sys.argv[1:]
fd = os.open(path, os.O_RDONLY if how == "r" else os.O_WRONLY | os.O_APPEND)
fcntl.flock(fd, fcntl.LOCK_EX if opt == "-x" else fcntl.LOCK_SH)
open(held, "w").write("held\n")
open(release).read()
PY
    hold_pid=$!
    while [ ! -e "/tmp/lk-held-$tag" ]; do
        if ! kill -0 "$hold_pid" 2>/dev/null && [ ! -e "/tmp/lk-held-$tag" ]; then
            fail "$tag: flock $opt on $file (opened $([ "$how" = r ] && echo read-only || echo write-only)) failed"
        fi
        sleep 0.1
    done
}
release() {  # release TAG: the holder drops its lock and exits
    echo go >"/tmp/lk-rel-$1"
    wait "$hold_pid"
}
try_lock() {  # try_lock FLOCK_OPT r|w FILE: a non-blocking flock on a new open
    if [ "$2" = r ]; then flock -n "$1" 9 9<"$3"; else flock -n "$1" 9 9>>"$3"; fi
}
two_mount_flocks() {  # two_mount_flocks WHERE FILE_ON_ONE FILE_ON_OTHER [w]
    local where=$1 one=$2 other=$3 wo=${4:-}
    hold "$where-x-ro" -x r "$one"
    denied "$where: flock -s while -x held (read-only open) on the other mount" try_lock -s r "$other"
    denied "$where: flock -x while -x held (read-only open) on the other mount" try_lock -x r "$other"
    release "$where-x-ro"
    check "$where: flock -x on a read-only open after release" try_lock -x r "$other"
    hold "$where-s-ro" -s r "$one"
    check "$where: flock -s beside -s (read-only opens)" try_lock -s r "$other"
    denied "$where: flock -x while -s held (read-only open)" try_lock -x r "$other"
    release "$where-s-ro"
    if [ -n "$wo" ]; then
        hold "$where-s-wo" -s w "$one"
        check "$where: flock -s (read-only open) beside -s on a write-only open" try_lock -s r "$other"
        denied "$where: flock -x (read-only open) while -s held on a write-only open" try_lock -x r "$other"
        denied "$where: flock -x (write-only open) while -s held on a write-only open" try_lock -x w "$other"
        release "$where-s-wo"
        check "$where: flock -s on a write-only open after release" try_lock -s w "$other"
    fi
}

two_mount_flocks export "$A" "$B" w
check_eq "flock changed no data" "$(stat -c %s "$A")" 0

if [ -n "${RO_ANAME:-}" ]; then
    second_mount /mnt/roa "aname=$RO_ANAME"
    second_mount /mnt/rob "aname=$RO_ANAME"
    denied "write on the read-only export" sh -c ': >>/mnt/roa/lockfile'
    two_mount_flocks read-only-export /mnt/roa/lockfile /mnt/rob/lockfile
    umount /mnt/roa /mnt/rob
else
    echo "locks: this server has no read-only export here; skipped that part"
fi

if [ -d "$MNT/.snapshots" ]; then
    snap=lk-$TRANS-$ACCESS-$CACHE
    mkdir "$MNT/.snapshots/$snap"
    SA=$MNT/.snapshots/$snap/wl-$WL/lockfile
    SB=/mnt/b/.snapshots/$snap/wl-$WL/lockfile
    check "second mount sees the snapshot" test -e "$SB"
    denied "write inside the snapshot" sh -c ": >>'$SA'"
    two_mount_flocks snapshot "$SA" "$SB"
    rmdir "$MNT/.snapshots/$snap"
else
    echo "locks: no /.snapshots on this server; skipped that part"
fi
echo "flock on read-only and write-only opens ok"
