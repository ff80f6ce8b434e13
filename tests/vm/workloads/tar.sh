. /job/workloads/lib.sh
src=$W/src
mkdir -p "$src/d1/d2" "$src/exec"
echo hello >"$src/d1/file"; chmod 0604 "$src/d1/file"
printf '#!/bin/sh\necho hi\n' >"$src/exec/run"; chmod 0751 "$src/exec/run"
head -c 100000 /dev/urandom >"$src/d1/d2/blob"
ln -s ../d1/file "$src/exec/link"
ln "$src/d1/file" "$src/exec/hard"
chown "$TEST_UID:$TEST_GID" "$src/d1/d2/blob"
touch -d '2001-09-09 01:46:40' "$src/d1/file"
touch -d '2010-10-10 10:10:10' "$src/d1/d2/blob"
touch -h -d '2012-12-12 12:12:12' "$src/exec/link"
touch -d '2005-05-05 05:05:05' "$src/d1/d2"
chmod 2775 "$src/d1/d2"
tar --numeric-owner -cpf "$W/src.tar" -C "$W" src
tar --numeric-owner -cpf /tmp/src-tmp.tar -C "$W" src
check "tar archives equal" cmp "$W/src.tar" /tmp/src-tmp.tar
mkdir "$W/out"
tar --numeric-owner -xpf "$W/src.tar" -C "$W/out"
listing() { (cd "$1" && find . -printf '%y %m %U:%G %n %T@ %s %l %p\n' | sed 's/\.[0-9]* / /' | sort); }
# directory sizes differ between file systems: drop %s for directories
norm() { awk '$1 == "d" { $6 = "-" } { print }'; }
check_eq "tar round trip listing" "$(listing "$W/out/src" | norm)" "$(listing "$src" | norm)"
check "tar round trip content" diff -r --no-dereference "$src" "$W/out/src"
check_eq "hard link kept" "$(stat -c %i "$W/out/src/exec/hard")" "$(stat -c %i "$W/out/src/d1/file")"
check_eq "mtime" "$(stat -c %Y "$W/out/src/d1/file")" 1000000000
check_eq "setgid dir mode" "$(stat -c %a "$W/out/src/d1/d2")" 2775
check_eq "owner" "$(stat -c %u "$W/out/src/d1/d2/blob")" "$TEST_UID"
# and out to local disk
mkdir /tmp/out-local
tar --numeric-owner -xpf "$W/src.tar" -C /tmp/out-local
check_eq "local extract listing" "$(listing /tmp/out-local/src | norm)" "$(listing "$src" | norm)"
