. /job/workloads/lib.sh
src=/tmp/src-$WL
rm -rf "$src"; mkdir -p "$src/a/b/c" "$src/empty dir" "$src/ünïcødé-名前-🙂"
echo one >"$src/a/one"
printf 'two\n%.0s' $(seq 1000) >"$src/a/b/two"
head -c 300000 /dev/urandom >"$src/a/b/c/random.bin"
echo space >"$src/with space.txt"
echo dash >"$src/-leading-dash"
echo quote >"$src/it's \"quoted\""
echo uni >"$src/ünïcødé-名前-🙂/ファイル.txt"
long=$(printf 'L%.0s' $(seq 255))
echo long >"$src/$long"
ln -s a/one "$src/rel-link"
ln -s /nonexistent/target "$src/dangling"
ln -s a/b "$src/dir-link"
ln "$src/a/one" "$src/hard-1"
ln "$src/a/one" "$src/a/b/hard-2"
chmod 0640 "$src/a/one"; chmod 0755 "$src/a/b"; chmod 0700 "$src/a/b/c"
chmod 0600 "$src/with space.txt"
touch -h -d '2020-01-02 03:04:05' "$src/rel-link"
touch -d '2019-05-06 07:08:09' "$src/a/b/two"

mkdir -p "$W/deep/x/y/z"
check "mkdir -p" test -d "$W/deep/x/y/z"
cp -a "$src" "$W/copy"
check "diff -r copy" diff -r --no-dereference "$src" "$W/copy"
check "long name" test -f "$W/copy/$long"
check_eq "long name length" "$(ls "$W/copy" | awk 'length($0) == 255' | wc -l)" 1
check_eq "symlink target" "$(readlink "$W/copy/rel-link")" a/one
check_eq "dangling target" "$(readlink "$W/copy/dangling")" /nonexistent/target
check_eq "hard link inode" "$(stat -c %i "$W/copy/hard-1")" "$(stat -c %i "$W/copy/a/one")"
check_eq "hard link count" "$(stat -c %h "$W/copy/a/b/hard-2")" 3
check_eq "mode kept" "$(stat -c %a "$W/copy/a/b/c")" 700
check_eq "mtime kept" "$(stat -c %Y "$W/copy/a/b/two")" "$(stat -c %Y "$src/a/b/two")"
check_eq "symlink mtime kept" "$(stat -c %Y "$W/copy/rel-link")" "$(stat -c %Y "$src/rel-link")"
drop_caches
check "diff -r after drop_caches" diff -r --no-dereference "$src" "$W/copy"

# mv across directories: a file, a directory, and over an existing file
cp -a "$W/copy" "$W/work"
mv "$W/work/a/b" "$W/deep/x/y/z/moved-b"
check "moved dir gone" test ! -e "$W/work/a/b"
check "moved dir content" diff -r --no-dereference "$src/a/b" "$W/deep/x/y/z/moved-b"
mv "$W/work/with space.txt" "$W/deep/x/renamed file"
check_eq "moved file" "$(cat "$W/deep/x/renamed file")" space
echo new >"$W/deep/target"
mv "$W/work/-leading-dash" "$W/deep/target"
check_eq "mv over existing" "$(cat "$W/deep/target")" dash
mv "$W/work/ünïcødé-名前-🙂" "$W/deep/ünï-moved"
check_eq "unicode dir moved" "$(cat "$W/deep/ünï-moved/ファイル.txt")" uni
# rm -rf
rm -rf "$W/work" "$W/deep"
check "rm -rf work" test ! -e "$W/work"
check "rm -rf deep" test ! -e "$W/deep"
check_eq "only copy left" "$(ls -A "$W")" copy
