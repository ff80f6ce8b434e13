. /job/workloads/lib.sh
# POSIX ACLs (issue 23). The kernel applies ACLs only on a mount with
# access=client,posixacl (v9fs drops posixacl under any other access mode),
# so those checks use a second mount of the same export: $A is $W there.
# The batch's own mount ($W, whatever its access mode) shows what the server
# enforces by itself: an ACL that refuses what the mode bits would allow.
command -v setfacl >/dev/null || fail "setfacl missing from the guest (Debian package acl)"
OU=4242   # a second unprivileged uid, named nowhere
as_other() { setpriv --reuid="$OU" --regid="$OU" --clear-groups -- "$@"; }
acl_of() { getfacl -cnEp -a "$@"; }   # access ACL entries: no header, numeric ids, no #effective
dacl_of() { getfacl -cnEp -d "$@"; }  # default ACL entries, likewise
U=$TEST_UID G=$TEST_GID
second_mount /mnt/acl "access=client,posixacl"
A=/mnt/acl/wl-$WL
umask 022

# -- round trip, mode from the ACL, named user admitted, another refused
echo secret >"$A/f"
chmod 0600 "$A/f"
setfacl -m "u:$U:rw,g:$G:r" "$A/f"
check_eq "getfacl after setfacl" "$(acl_of "$A/f")" "user::rw-
user:$U:rw-
group::---
group:$G:r--
mask::rw-
other::---"
check_eq "mode group bits are the mask" "$(stat -c %a "$A/f")" 660
before=$(acl_of "$A/f")
drop_caches
check_eq "getfacl from the server" "$(acl_of "$A/f")" "$before"
if [ "$ACCESS" = user ]; then
    # access=user passes ACL xattrs through to the server; access=client
    # without posixacl answers them from an empty cache (fs/9p/acl.c)
    check_eq "getfacl through the batch's mount" "$(acl_of "$W/f")" "$before"
fi
check_eq "named user reads" "$(as_user cat "$A/f")" secret
as_user sh -c "echo more >>'$A/f'"
denied "unnamed user reads" as_other cat "$A/f"
# -- chmod against the mask: rewrites the mask, the named entry stays
chmod 0640 "$A/f"
check_eq "chmod rewrites the mask" "$(acl_of "$A/f")" "user::rw-
user:$U:rw-
group::---
group:$G:r--
mask::r--
other::---"
denied "mask limits the named user" as_user sh -c "echo x >>'$A/f'"
check_eq "named user still reads" "$(as_user head -1 "$A/f")" secret
# -- the batch's mount (any access mode): the server refuses by itself
echo open >"$W/r"
chmod 0644 "$W/r"
setfacl -m "u:$OU:---" "$W/r"
drop_caches
check_eq "server: mode after a restricting ACL" "$(stat -c %a "$W/r")" 644
check_eq "server: unnamed user reads by other" "$(as_user cat "$W/r")" open
denied "server: named user refused though other may read" as_other cat "$W/r"
denied "posixacl mount: named user refused" as_other cat "$A/r"

# -- default ACLs: inheritance for files and directories, umask not applied
mkdir "$A/dd"
chmod 0755 "$A/dd"
setfacl -m "u:$U:rwx" "$A/dd"
setfacl -d --set "u::rwx,u:$U:rwx,g::r-x,m::rwx,o::r-x" "$A/dd"
touch "$A/dd/new"
mkdir "$A/dd/sub"
touch "$A/plain"
check_eq "no default ACL: the client applied the umask" "$(stat -c %a "$A/plain")" 644
check_eq "inherited file: mode from ACL and create mode, no umask" "$(stat -c %a "$A/dd/new")" 664
check_eq "inherited file ACL" "$(acl_of "$A/dd/new")" "user::rw-
user:$U:rwx
group::r-x
mask::rw-
other::r--"
check_eq "inherited dir mode" "$(stat -c %a "$A/dd/sub")" 775
check_eq "inherited dir access ACL" "$(acl_of "$A/dd/sub")" "user::rwx
user:$U:rwx
group::r-x
mask::rwx
other::r-x"
check_eq "inherited default ACL" "$(dacl_of "$A/dd/sub")" "$(dacl_of "$A/dd")"
test -n "$(dacl_of "$A/dd/sub")" || fail "no default ACL on the new directory"
drop_caches
check_eq "server view of the inherited mode" "$(stat -c %a "$W/dd/new")" 664
# Without posixacl the client applies the umask to the create mode (022 here);
# the server then adds the inherited ACL, masked by that mode.
touch "$W/dd/viabatch"
check_eq "batch mount: inherited, umasked mode" "$(stat -c %a "$W/dd/viabatch")" 644
check_eq "batch mount: inherited ACL" "$(acl_of "$A/dd/viabatch")" "user::rw-
user:$U:rwx
group::r-x
mask::r--
other::r--"
as_user touch "$A/dd/byuser"
check_eq "named user creates in the ACL'd dir" "$(stat -c %u "$A/dd/byuser")" "$U"
denied "unnamed user may not create there" as_other touch "$A/dd/byother"

# -- copies keep ACLs: cp -a, tar --acls
cp -a "$A/f" "$A/f.cp"
check_eq "cp -a keeps the ACL" "$(acl_of "$A/f.cp")" "$(acl_of "$A/f")"
cp -a "$A/dd" "$A/dd.cp"
check_eq "cp -a keeps the default ACL" "$(dacl_of "$A/dd.cp")" "$(dacl_of "$A/dd")"
check_eq "cp -a keeps inherited ACLs" "$(acl_of "$A/dd.cp/new")" "$(acl_of "$A/dd/new")"
tar --acls -cf /tmp/acl.tar -C "$A" f dd
mkdir "$A/untar"
tar --acls -xpf /tmp/acl.tar -C "$A/untar"
check_eq "tar --acls: file" "$(acl_of "$A/untar/f")" "$(acl_of "$A/f")"
check_eq "tar --acls: dir" "$(acl_of "$A/untar/dd")" "$(acl_of "$A/dd")"
check_eq "tar --acls: default" "$(dacl_of "$A/untar/dd")" "$(dacl_of "$A/dd")"
check_eq "tar --acls: inherited" "$(acl_of "$A/untar/dd/new")" "$(acl_of "$A/dd/new")"
# -- removal
setfacl -b "$A/f.cp"
out=$(acl_of "$A/f.cp")
[ "$(echo "$out" | wc -l)" = 3 ] || fail "setfacl -b left extended entries: $out | $(getfattr -e hex -n system.posix_acl_access "$A/f.cp" 2>&1) | $(stat -c %a "$A/f.cp")"
denied "no ACL xattr after setfacl -b" getfattr -n system.posix_acl_access "$A/f.cp"
umount /mnt/acl
