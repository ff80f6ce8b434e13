#!/bin/bash
# Runs the workloads named in $WORKLOADS one after the other in this boot.
# Each gets its own directory $MNT/wl-NAME; after it succeeds the guest's
# view of that directory goes to $MNT/wl-NAME.manifest for the host check.
. /job/config
export MNT=$NINEP_AUTOMOUNT ACCESS CACHE TRANS TEST_UID TEST_GID RO_ANAME
getent passwd "$TEST_UID" >/dev/null || echo "tester$TEST_UID:x:$TEST_UID:$TEST_GID::/tmp:/bin/sh" >>/etc/passwd
getent group "$TEST_GID" >/dev/null || echo "tester$TEST_GID:x:$TEST_GID:" >>/etc/group
for wl in $WORKLOADS; do
    echo
    echo "@@WL-BEGIN $wl@@"
    t0=$(date +%s.%N)
    W=$MNT/wl-$wl
    rc=0
    if mkdir -p "$W"; then
        limit=WL_TIMEOUT_$wl
        limit=${!limit:-$WL_TIMEOUT}
        (cd "$W" && WL=$wl W=$W exec timeout -k 10 "$limit" bash "/job/workloads/$wl.sh") || rc=$?
    else
        rc=98
    fi
    if [ "$rc" = 0 ]; then
        python3 /job/workloads/manifest.py "$W" >"$MNT/wl-$wl.manifest" || rc=97
    fi
    t1=$(date +%s.%N)
    echo
    echo "@@WL-END $wl $rc $(echo "$t0 $t1" | awk '{ printf "%.1f", $2 - $1 }')@@"
done
exit 0
