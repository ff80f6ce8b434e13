. /job/workloads/lib.sh
mkdir -p "$W/tree/sub"
for i in $(seq 1 30); do echo "file $i" >"$W/tree/sub/f$i"; done
head -c 3000000 /dev/urandom >"$W/tree/blob"
sha=$(sha256sum <"$W/tree/blob")
ln -s sub/f1 "$W/tree/link"
sync
second_mount /mnt/ro "cache=loose,ro"
grep " /mnt/ro " /proc/mounts
R=/mnt/ro/wl-$WL/tree
check "loose diff" diff -r --no-dereference "$W/tree" "$R"
check_eq "loose sha" "$(sha256sum <"$R/blob")" "$sha"
check_eq "loose sha again (cached)" "$(sha256sum <"$R/blob")" "$sha"
check_eq "loose readlink" "$(readlink "$R/link")" sub/f1
denied "write on ro mount" sh -c "echo x >'$R/new'"
umount /mnt/ro
