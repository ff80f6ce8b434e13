. /job/workloads/lib.sh
echo x >"$W/f"; mkdir "$W/d"
setfattr -n user.color -v blue "$W/f"
setfattr -n user.temp -v 1 "$W/f"
setfattr -n user.bin -v 0x00ff10 "$W/f"
big=$(head -c 3000 /dev/zero | tr '\0' 'v')
setfattr -n user.big -v "$big" "$W/f"
setfattr -n user.dir -v yes "$W/d"
drop_caches
check_eq "get" "$(getfattr --only-values -n user.color "$W/f")" blue
check_eq "get big" "$(getfattr --only-values -n user.big "$W/f")" "$big"
check_eq "get bin" "$(getfattr -e hex -n user.bin "$W/f" | grep user.bin)" "user.bin=0x00ff10"
check_eq "get dir" "$(getfattr --only-values -n user.dir "$W/d")" yes
check_eq "list" "$(getfattr -d -m '^user\.' "$W/f" | grep -o '^user\.[a-z]*' | sort | tr '\n' ' ')" "user.big user.bin user.color user.temp "
setfattr -n user.color -v red "$W/f"
check_eq "replace" "$(getfattr --only-values -n user.color "$W/f")" red
setfattr -x user.temp "$W/f"
denied "removed attribute" getfattr -n user.temp "$W/f"
# (an empty value cannot be told from a removal in 9P2000.L: Txattrcreate
# with size 0 removes, so empty values are not tested)
denied "missing attribute" getfattr -n user.nothere "$W/f"
# copy with attributes
cp -a "$W/f" "$W/f2"
check_eq "cp -a keeps xattrs" "$(getfattr --only-values -n user.color "$W/f2")" red
