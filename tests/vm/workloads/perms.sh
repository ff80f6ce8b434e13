. /job/workloads/lib.sh
echo data >"$W/f"
chmod 0640 "$W/f"
check_eq "chmod" "$(stat -c %a "$W/f")" 640
chmod u+x,g-r "$W/f"
check_eq "chmod symbolic" "$(stat -c %a "$W/f")" 700
chown "$TEST_UID:$TEST_GID" "$W/f"
check_eq "chown" "$(stat -c %u:%g "$W/f")" "$TEST_UID:$TEST_GID"
chown 0:0 "$W/f"
touch -d '2001-02-03 04:05:06 UTC' "$W/f"
check_eq "utimes mtime" "$(stat -c %Y "$W/f")" 981173106
touch -a -d '2002-02-03 04:05:06 UTC' "$W/f"
check_eq "utimes atime" "$(stat -c %X "$W/f")" 1012709106
check_eq "mtime unchanged by -a" "$(stat -c %Y "$W/f")" 981173106
python3 -c 'import os,sys; os.utime(sys.argv[1], ns=(1500000000123456789, 1600000000987654321))' "$W/f"
# seconds must be exact; sub-second precision is the server's choice
ns=$(stat -c %.9Y "$W/f")
check_eq "utimes (ns call) seconds" "${ns%.*}" 1600000000
echo "utimes: wanted 1600000000.987654321, got $ns"
# Before 1970: Linux's 9p client clamps times to 0 before sending them (fs/9p sets
# s_time_min = 0), so the guest sees 1970-01-01 where ext4 would show 1969. A client
# that sends a negative time has it stored exactly (tests/server/test_values.py).
# Here: the touch works, guest and server agree, and commits go on.
touch -d '1969-12-31 00:00:00 UTC' "$W/old1969"
old=$(stat -c %Y "$W/old1969")
case "$old" in -86400|0) ;; *) fail "mtime before 1970: got $old, want -86400 (or 0, clamped)" ;; esac
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$W/old1969"
# Past 2262 ninep refuses (EINVAL: its catalog keeps nanoseconds in 64 bits); ext4 under diod keeps it.
touch "$W/far"
if out=$(touch -d '2300-01-01 00:00:00 UTC' "$W/far" 2>&1); then
    check_eq "mtime in 2300" "$(stat -c %Y "$W/far")" 10413792000
else
    case "$out" in *"Invalid argument"*) ;; *) fail "touch past 2262: $out" ;; esac
fi
check_eq "mtime before 1970, after the touch past 2262" "$(stat -c %Y "$W/old1969")" "$old"
mkdir "$W/sub"; chmod 0755 "$W/sub"
drop_caches
check_eq "mtime before 1970, from the server" "$(stat -c %Y "$W/old1969")" "$old"
python3 -c 'import os,sys; os.fsync(os.open(sys.argv[1], os.O_RDONLY))' "$W/far"

if [ "$ACCESS" = user ] || [ "$ACCESS" = client ]; then
    chmod 0600 "$W/f"
    denied "read of root's 0600 file" as_user cat "$W/f"
    denied "write of root's 0600 file" as_user sh -c "echo x >>'$W/f'"
    denied "create in root's 0755 dir" as_user touch "$W/sub/new"
    denied "mkdir in root's 0755 dir" as_user mkdir "$W/sub/newdir"
    denied "unlink in root's 0755 dir" as_user rm -f "$W/f"
    denied "chmod of root's file" as_user chmod 0777 "$W/f"
    denied "chown by non-root" as_user chown "$TEST_UID" "$W/f"
    denied "utimes of root's file" as_user touch -d '2003-01-01' "$W/f"
    chmod 0644 "$W/f"
    check_eq "read of 0644 file" "$(as_user cat "$W/f")" data
    # a directory the test user owns
    mkdir "$W/u"; chown "$TEST_UID:$TEST_GID" "$W/u"; chmod 0755 "$W/u"
    as_user sh -c "echo mine >'$W/u/mine' && mkdir '$W/u/d' && chmod 0600 '$W/u/mine'"
    check_eq "owner of user-created file" "$(stat -c %u:%g "$W/u/mine")" "$TEST_UID:$TEST_GID"
    check_eq "owner of user-created dir" "$(stat -c %u "$W/u/d")" "$TEST_UID"
    check_eq "user reads own 0600" "$(as_user cat "$W/u/mine")" mine
    check "root reads user's 0600" test "$(cat "$W/u/mine")" = mine
    as_user touch -d '2004-04-04 04:04:04 UTC' "$W/u/mine"
    check_eq "user utimes own file" "$(stat -c %Y "$W/u/mine")" 1081051444
    # sticky directory
    mkdir "$W/sticky"; chmod 1777 "$W/sticky"
    echo r >"$W/sticky/roots"
    denied "unlink of root's file in sticky dir" as_user rm -f "$W/sticky/roots"
    as_user sh -c "echo u >'$W/sticky/users'"
    as_user rm "$W/sticky/users"
    check "user removes own file in sticky dir" test ! -e "$W/sticky/users"
    # setgid directory: new files inherit the group
    mkdir "$W/sgid"; chown "0:$TEST_GID" "$W/sgid"; chmod 2777 "$W/sgid"
    touch "$W/sgid/byroot"
    check_eq "setgid inheritance" "$(stat -c %g "$W/sgid/byroot")" "$TEST_GID"
    mkdir "$W/sgid/subdir"
    check_eq "setgid on subdir" "$(stat -c %a "$W/sgid/subdir" | cut -c1)" 2
    # execute permission
    printf '#!/bin/sh\necho ran\n' >"$W/u/prog"; chmod 0700 "$W/u/prog"; chown "$TEST_UID" "$W/u/prog"
    check_eq "exec own 0700" "$(as_user "$W/u/prog")" ran
    chown 0 "$W/u/prog"
    denied "exec root's 0700" as_user "$W/u/prog"
fi
