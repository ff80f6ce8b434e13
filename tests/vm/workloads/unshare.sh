. /job/workloads/lib.sh
echo outside >"$W/from-outside"
unshare -m --propagation private sh -c '
    set -e
    ninep-mount /mnt/c
    grep -q " /mnt/c 9p " /proc/mounts
    cat /mnt/c/wl-'"$WL"'/from-outside | grep -q outside
    echo inside >/mnt/c/wl-'"$WL"'/from-inside
    mkdir /mnt/c/wl-'"$WL"'/ns-dir
    mv /mnt/c/wl-'"$WL"'/from-inside /mnt/c/wl-'"$WL"'/ns-dir/
    umount /mnt/c
'
check "mount invisible outside the namespace" sh -c '! grep -q " /mnt/c " /proc/mounts'
check_eq "written from the namespace" "$(cat "$W/ns-dir/from-inside")" inside
