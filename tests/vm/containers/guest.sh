#!/bin/bash
# Rootful Podman in the guest mounts ninep datasets as volumes (issue 18).
# Run by tests/vm/test_containers.py in one boot; /job/config carries the
# exact `podman volume create` lines `ninep volume create` printed on the host
# (PODMAN_TCP for dataset vol over trans=tcp, PODMAN_UNIX for uvol over
# trans=unix) and the server's port.  Each step prints @@CT-OK NAME@@ when its
# checks passed; the first failure prints @@CT-FAIL NAME: why@@ and exits 1.
set -u -o pipefail
. /job/config
IMG=localhost/ninep-test
STEP=setup
ok() { echo "@@CT-OK $STEP@@"; }
fail() { echo "@@CT-FAIL $STEP: $*@@"; exit 1; }
step() { STEP=$1; echo "--- $STEP"; }
run() { podman run --rm "$@"; }   # every container: removed when it exits

step setup
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cgroup2"
podman --version || fail "podman missing"
ok

# The container image, from the guest's own binaries (no registry).
step image
. /job/containers/image.sh
image_tar /tmp/img.tar || fail "image tarball"
podman import -q /tmp/img.tar $IMG >/dev/null || fail "podman import"
run $IMG sh -c 'echo image runs' | grep -qx 'image runs' || fail "a container of $IMG does not run"
ok

# A volume on dataset vol over trans=tcp, created with the line the host printed.
step volume_create
echo "+ $PODMAN_TCP"
eval "$PODMAN_TCP" || fail "podman volume create"
podman volume inspect vol --format '{{.Driver}} {{.Options}}' || fail "inspect"
ok

step write
echo "+ podman run --rm -v vol:/data $IMG sh -c ..."
run -v vol:/data $IMG sh -euc '
    mkdir -p /data/tree/a/b
    printf "written in a container\n" > /data/tree/a/b/file
    printf "second\n" > /data/tree/top
    chmod 0640 /data/tree/a/b/file
    chmod 0750 /data/tree/a
    setfattr -n user.origin -v container /data/tree/a/b/file
    ln -s b/file /data/tree/a/link
    sync -f /data/tree/a/b/file
    sync
    [ "$(getfattr --only-values -n user.origin /data/tree/a/b/file)" = container ]
    [ "$(stat -c %a /data/tree/a/b/file)" = 640 ]
    [ "$(cat /data/host-file)" = "written on the host" ]
    echo container wrote' | grep -qx 'container wrote' || fail "the writing container failed"
echo "+ podman run --rm -v vol:/data $IMG sh -c 'echo hi > /data/hello && sync'"
podman run --rm -v vol:/data $IMG sh -c 'echo hi > /data/hello && sync' || fail "docs write"
# podman mounts a local-driver volume when a container starts and unmounts it
# when the last one using it exits
grep -q ' /var/lib/containers/storage/volumes/vol/_data ' /proc/mounts \
    && fail "the volume is still mounted after its container exited"
ok

step read_only
echo "+ podman run --rm -v vol:/data:ro $IMG cat /data/hello"
[ "$(podman run --rm -v vol:/data:ro $IMG cat /data/hello)" = hi ] || fail "the :ro container does not read the file"
echo "+ podman run --rm -v vol:/data:ro $IMG sh -c ..."
out=$(run -v vol:/data:ro $IMG sh -c '
    cat /data/tree/a/b/file
    getfattr --only-values -n user.origin /data/tree/a/b/file; echo
    stat -c %a /data/tree/a/b/file
    touch /data/tree/ro-write 2>&1
    mkdir /data/ro-dir 2>&1
    setfattr -n user.ro -v 1 /data/tree/top 2>&1
    echo end')
echo "$out"
[ "$(echo "$out" | head -3)" = "written in a container
container
640" ] || fail "the :ro container does not see the writes"
[ "$(echo "$out" | grep -c 'Read-only file system')" = 3 ] || fail "writes through :ro did not fail with EROFS"
ok

# Snapshots: one taken on the host before the boot (fromhost), one made here
# by a container's root with mkdir; a container lists and reads both.
step snapshots
echo "+ podman run --rm -v vol:/data $IMG mkdir /data/.snapshots/fromct"
podman run --rm -v vol:/data $IMG mkdir /data/.snapshots/fromct || fail "mkdir in .snapshots"
echo "+ podman run --rm -v vol:/data:ro $IMG ls /data/.snapshots"
[ "$(podman run --rm -v vol:/data:ro $IMG ls /data/.snapshots)" = "fromct
fromhost" ] || fail "ls /data/.snapshots"
out=$(run -v vol:/data:ro $IMG sh -c '
    ls /data/.snapshots
    cat /data/.snapshots/fromhost/host-file
    cat /data/.snapshots/fromct/tree/a/b/file
    ls /data/.snapshots/fromhost
    touch /data/.snapshots/fromct/x 2>&1')
echo "$out"
echo "$out" | grep -qx fromhost || fail "host snapshot not listed"
echo "$out" | grep -qx fromct || fail "container snapshot not listed"
echo "$out" | grep -qx 'written on the host' || fail "host snapshot content"
echo "$out" | grep -qx 'written in a container' || fail "container snapshot content"
echo "$out" | grep -qx tree && fail "fromhost holds the later tree"
echo "$out" | grep -q 'Read-only file system' || fail "snapshot writable"
ok

# A bind mount: the export mounted in the guest (dataset main on /mnt/9p by
# the runner), then given to the container with -v /mnt/9p:/data.
step bind
echo "+ podman run --rm -v /mnt/9p:/data $IMG sh -c 'echo hi > /data/bind-file; sync'"
podman run --rm -v /mnt/9p:/data $IMG sh -c 'echo hi > /data/bind-file; sync' || fail "bind mount write"
[ "$(cat /mnt/9p/bind-file)" = hi ] || fail "bind write not visible in the guest"
ok

# trans=unix: the server's port relayed to a unix socket in the guest.
step unix
socat UNIX-LISTEN:/run/ninep.sock,fork,mode=600 TCP:10.0.2.2:$NINEP_PORT &
for i in $(seq 50); do [ -S /run/ninep.sock ] && break; sleep 0.1; done
[ -S /run/ninep.sock ] || fail "socat did not listen"
echo "+ $PODMAN_UNIX"
eval "$PODMAN_UNIX" || fail "podman volume create (unix)"
echo "+ podman run --rm -v uvol:/data $IMG sh -c 'echo hi > /data/unix-file; sync'"
podman run --rm -v uvol:/data $IMG sh -c 'echo hi > /data/unix-file; sync' || fail "write over trans=unix"
[ "$(run -v uvol:/data:ro $IMG cat /data/unix-file)" = hi ] || fail "read back over unix"
ok

# A server restart under a running container. The host restarts the server
# (same store, same port) when it reads @@CT-RESTART@@, then writes
# `restarted` into dataset main; a fresh mount seeing that file means the new
# server answers.
step restart
# The running container ("holder") is driven through a bind-mounted control
# directory, not `podman exec`: with no_pivot_root an exec'd process does not
# get the container's root in this guest (see vm-images/README.md).
mkdir -p /run/ctl
podman run -d --name holder -v vol:/data -v /run/ctl:/ctl $IMG sh -c '
    { cat /data/tree/top; echo "cat rc=$?"; } > /ctl/before 2>&1
    while [ ! -e /ctl/go ]; do sleep 0.2; done
    { cat /data/tree/top; echo "cat rc=$?"
      ls /data >/dev/null; echo "ls rc=$?"
      touch /data/after-restart; echo "touch rc=$?"
      stat -c %s /data/tree/top; echo "stat rc=$?"; } > /ctl/after 2>&1
    touch /ctl/done
    sleep 900' >/dev/null || fail "holder did not start"
for i in $(seq 600); do grep -q "cat rc=" /run/ctl/before 2>/dev/null && break; sleep 0.2; done
cat /run/ctl/before
[ "$(cat /run/ctl/before)" = "second
cat rc=0" ] || fail "holder cannot read before the restart"
echo "@@CT-RESTART@@"
back=
for i in $(seq 240); do
    if ninep-mount /mnt/probe 2>/dev/null; then
        [ -e /mnt/probe/restarted ] && back=1
        umount /mnt/probe
        [ -n "$back" ] && break
    fi
    sleep 0.5
done
[ -n "$back" ] || fail "the restarted server never answered a new mount"
touch /run/ctl/go
for i in $(seq 600); do [ -e /run/ctl/done ] && break; sleep 0.2; done
[ -e /run/ctl/done ] || fail "holder did not report after the restart"
echo "what the running container sees after the restart:"
cat /run/ctl/after
for op in cat ls touch stat; do
    grep -q "^$op rc=[0-9]" /run/ctl/after || fail "no result for $op"
    grep -qx "$op rc=0" /run/ctl/after && fail "$op on the old mount succeeded after the restart"
done
# the container is removed: podman unmounts the dead mount; a new container mounts again
podman rm -f -t 0 holder >/dev/null || fail "podman rm -f holder"
grep -q ' /var/lib/containers/storage/volumes/vol/_data ' /proc/mounts \
    && fail "the dead mount is still there after the container was removed"
[ "$(podman run --rm -v vol:/data $IMG cat /data/tree/top)" = second ] \
    || fail "a new container cannot read after the restart"
run -v vol:/data $IMG sh -c 'printf "after the restart\n" > /data/after-restart; sync' \
    || fail "a new container cannot write after the restart"
ok

# podman-compose (the pinned PyPI version in the image, not Debian's 1.0.3):
# the compose file's volume carries the driver_opts of dataset cvol; its
# service writes a file the host then reads through ninep's client.
step compose
podman-compose --version || fail "podman-compose missing"
cat /job/compose.yaml
(cd /job && podman-compose -p ninep up) || fail "podman-compose up"
podman volume inspect ninep_data --format '{{.Driver}} {{.Options}}' || fail "compose volume"
podman volume inspect ninep_data --format '{{.Options}}' | grep -q 'aname=cvol' \
    || fail "the compose volume lacks its driver_opts"
(cd /job && podman-compose -p ninep down -v) || fail "podman-compose down -v"
podman volume exists ninep_data && fail "podman-compose down -v left the volume"
[ -z "$(podman ps -aq)" ] || fail "containers left: $(podman ps -a)"
ok

step volumes_removed
podman volume rm vol uvol || fail "podman volume rm"
[ -z "$(podman volume ls -q)" ] || fail "volumes left: $(podman volume ls -q)"
ok
echo "@@CT-DONE@@"
