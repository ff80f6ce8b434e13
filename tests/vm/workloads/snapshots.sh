. /job/workloads/lib.sh
# /.snapshots through the kernel client: take a snapshot with mkdir, change the
# live tree, check the snapshot still shows the old tree, restore from it,
# EROFS inside, rmdir deletes it.
S=$MNT/.snapshots
check_eq "/.snapshots owner and mode" "$(stat -c %u:%g:%a "$S")" "0:0:755"
ls -a "$MNT" | grep -qx .snapshots || fail "/.snapshots is not listed in the root"
mkdir -p tree/sub
printf 'small file\n' > tree/small
head -c 300000 /dev/urandom > tree/big
: > tree/empty
printf 'in sub\n' > tree/sub/file
ln -s ../small tree/sub/link
ln tree/small tree/hardlink
truncate -s 1M tree/sparse && printf 'x' | dd of=tree/sparse bs=1 seek=500000 conv=notrunc status=none
setfattr -n user.color -v blue tree/small
chmod 640 tree/sub/file
cp -a tree /tmp/orig
snap=s-$TRANS-$ACCESS-$CACHE
mkdir "$S/$snap"
ls "$S" | grep -qx "$snap" || fail "new snapshot not listed"
# change everything
printf 'changed\n' >> tree/small
rm tree/big
mv tree/sub tree/moved
: > tree/empty2
truncate -s 10 tree/sparse
setfattr -n user.color -v red tree/small
chmod 600 tree/moved/file
# the snapshot still shows the old tree, byte for byte
check "snapshot equals the original" diff -r /tmp/orig "$S/$snap/wl-snapshots/tree"
check_eq "xattr in snapshot" "$(getfattr --only-values -n user.color "$S/$snap/wl-snapshots/tree/small")" "blue"
check_eq "mode in snapshot" "$(stat -c %a "$S/$snap/wl-snapshots/tree/sub/file")" "640"
check_eq "hard links in snapshot" "$(stat -c %h "$S/$snap/wl-snapshots/tree/hardlink")" "2"
check_eq "symlink in snapshot" "$(readlink "$S/$snap/wl-snapshots/tree/sub/link")" "../small"
# restore a file by copying it out
cp -a "$S/$snap/wl-snapshots/tree/big" tree/big
check "restored file" cmp tree/big /tmp/orig/big
# every mutation inside fails with EROFS
python3 - "$S/$snap/wl-snapshots/tree" <<'PY'
import errno, os, sys
d = sys.argv[1]
def erofs(what, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == errno.EROFS, f"{what}: {e}"
    else:
        raise AssertionError(f"{what}: allowed inside a snapshot")
erofs("create", lambda: open(os.path.join(d, "new"), "w"))
erofs("write", lambda: open(os.path.join(d, "small"), "r+"))
erofs("mkdir", os.mkdir, os.path.join(d, "newdir"))
erofs("unlink", os.unlink, os.path.join(d, "small"))
erofs("rename", os.rename, os.path.join(d, "small"), os.path.join(d, "x"))
erofs("chmod", os.chmod, os.path.join(d, "small"), 0o777)
erofs("truncate", os.truncate, os.path.join(d, "big"), 0)
erofs("setxattr", os.setxattr, os.path.join(d, "small"), "user.x", b"1")
erofs("symlink", os.symlink, "t", os.path.join(d, "sl"))
erofs("link", os.link, os.path.join(d, "small"), os.path.join(d, "hl"))
print("EROFS everywhere inside the snapshot")
PY
# the live tree kept its changes
check_eq "live small" "$(cat tree/small)" "$(printf 'small file\nchanged')"
[ ! -e tree/sub ] || fail "live tree/sub should be gone"
# a second snapshot appears without remount, and rmdir deletes one
mkdir "$S/$snap-2"
rmdir "$S/$snap-2"
! ls "$S" | grep -qx "$snap-2" || fail "deleted snapshot still listed"
[ ! -e "$S/$snap-2" ] || fail "deleted snapshot still reachable"
# a non-root user may not create snapshots
denied "snapshot by a non-root user" as_user mkdir "$S/by-user"
echo "snapshots ok"
