#!/bin/bash
# Debian's docker.io in the guest mounts a ninep dataset as a volume with the
# `docker volume create` line `ninep volume create` printed on the host
# (DOCKER_TCP in /job/config). Markers as in guest.sh.
set -u -o pipefail
. /job/config
IMG=localhost/ninep-test
STEP=setup
ok() { echo "@@CT-OK $STEP@@"; }
fail() { echo "@@CT-FAIL $STEP: $*@@"; [ -f /tmp/dockerd.log ] && tail -30 /tmp/dockerd.log; exit 1; }
step() { STEP=$1; echo "--- $STEP"; }

step setup
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cgroup2"
# The guest's root is the initramfs (the init chroots): no pivot_root.
DOCKER_RAMDISK=true dockerd >/tmp/dockerd.log 2>&1 &
for i in $(seq 600); do docker version >/dev/null 2>&1 && break; sleep 0.2; done
docker version --format '{{.Server.Version}}' || fail "dockerd did not start"
ok

step image
. /job/containers/image.sh
image_tar /tmp/img.tar || fail "image tarball"
docker import /tmp/img.tar $IMG >/dev/null || fail "docker import"
docker run --rm --network none $IMG sh -c 'echo image runs' | grep -qx 'image runs' \
    || fail "a container of $IMG does not run"
ok

step volume_create
echo "+ $DOCKER_TCP"
eval "$DOCKER_TCP" || fail "docker volume create"
ok

step write
echo "+ docker run --rm --network none -v dvol:/data $IMG sh -c 'echo hi > /data/hello && sync'"
docker run --rm --network none -v dvol:/data $IMG sh -c 'echo hi > /data/hello && sync' || fail "write"
docker run --rm --network none -v dvol:/data $IMG sh -euc '
    mkdir -p /data/tree/a
    printf "written by docker\n" > /data/tree/a/file
    chmod 0640 /data/tree/a/file
    setfattr -n user.origin -v docker /data/tree/a/file
    sync -f /data/tree/a/file' || fail "tree"
ok

step read_only
echo "+ docker run --rm --network none -v dvol:/data:ro $IMG cat /data/hello"
[ "$(docker run --rm --network none -v dvol:/data:ro $IMG cat /data/hello)" = hi ] || fail "read through :ro"
out=$(docker run --rm --network none -v dvol:/data:ro $IMG sh -c 'touch /data/ro-write 2>&1; echo end')
echo "$out"
echo "$out" | grep -q 'Read-only file system' || fail "a write through :ro did not fail with EROFS"
ok

step snapshots
docker run --rm --network none -v dvol:/data $IMG mkdir /data/.snapshots/fromdocker || fail "mkdir"
[ "$(docker run --rm --network none -v dvol:/data:ro $IMG ls /data/.snapshots)" = fromdocker ] \
    || fail "ls /data/.snapshots"
ok

# The same options on the command line: --mount with volume-opt (the o=
# value holds commas, so that field is quoted inside the CSV).
step mount_flag
echo "+ $DOCKER_MOUNT"
[ "$(eval "$DOCKER_MOUNT")" = hi ] || fail "docker run --mount ... volume-opt"
ok

# docker-compose (Debian's, 1.29): the volume declared with driver_opts.
step compose
cat /job/compose.yaml
(cd /job && docker-compose -p ninep up --no-color writer) || fail "docker-compose up"
docker volume inspect ninep_data --format '{{.Driver}} {{.Options}}' || fail "compose volume"
(cd /job && docker-compose -p ninep down --volumes) || fail "docker-compose down"
ok

step volumes_removed
docker volume rm dvol dmount || fail "docker volume rm"
[ -z "$(docker volume ls -q)" ] || fail "volumes left: $(docker volume ls -q)"
ok
echo "@@CT-DONE@@"
