. /job/workloads/lib.sh
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.invalid
export GIT_AUTHOR_DATE='2020-01-01T00:00:00Z' GIT_COMMITTER_DATE='2020-01-01T00:00:00Z'
git config --global init.defaultBranch main
git config --global safe.directory '*'
git init -q "$W/repo"
cd "$W/repo"
mkdir -p src docs
for i in $(seq 1 20); do echo "line $i" >"src/file$i.txt"; done
head -c 50000 /dev/urandom >docs/blob.bin
ln -s src/file1.txt link
printf '#!/bin/sh\n' >run.sh; chmod +x run.sh
git add -A
git commit -q -m first
echo changed >>src/file3.txt
git mv src/file4.txt docs/moved.txt
git rm -q src/file5.txt
git commit -q -am second
git gc -q
git fsck --strict --no-progress
cd "$W"
git clone -q "$W/repo" "$W/clone"
git -C "$W/clone" fsck --strict --no-progress
check_eq "commits in clone" "$(git -C "$W/clone" rev-list --count HEAD)" 2
check_eq "same head" "$(git -C "$W/clone" rev-parse HEAD)" "$(git -C "$W/repo" rev-parse HEAD)"
check "clean clone" test -z "$(git -C "$W/clone" status --porcelain)"
check_eq "exec bit" "$(stat -c %a "$W/clone/run.sh")" 755
check_eq "symlink" "$(readlink "$W/clone/link")" src/file1.txt
git -C "$W/repo" rev-parse HEAD >"$W/head"
