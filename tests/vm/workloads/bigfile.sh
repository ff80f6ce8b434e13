. /job/workloads/lib.sh
# 64 MiB of a deterministic pattern (the host check regenerates it)
(yes 'ninep vm bigfile 0123456789abcdef' || true) | head -c 67108864 >/tmp/big
want=$(sha256sum </tmp/big | cut -d' ' -f1)
dd if=/tmp/big of="$W/big" bs=1M conv=fsync status=none
rm /tmp/big
drop_caches
check_eq "big size" "$(stat -c %s "$W/big")" 67108864
check_eq "big sha256" "$(dd if="$W/big" bs=1M status=none | sha256sum | cut -d' ' -f1)" "$want"
echo "$want" >"$W/big.sha256"

# sparse files: holes read as zeros
truncate -s 32M "$W/sparse"
check_eq "sparse size" "$(stat -c %s "$W/sparse")" 33554432
printf 'HEAD' | dd of="$W/sparse" conv=notrunc status=none
printf 'MIDDLE' | dd of="$W/sparse" bs=1 seek=$((16 * 1048576 + 3)) conv=notrunc status=none
printf 'TAIL' | dd of="$W/sparse" bs=1 seek=$((32 * 1048576 - 4)) conv=notrunc status=none
drop_caches
check_eq "sparse size kept" "$(stat -c %s "$W/sparse")" 33554432
check_eq "head" "$(head -c 4 "$W/sparse")" HEAD
check_eq "middle" "$(dd if="$W/sparse" bs=1 skip=$((16 * 1048576 + 3)) count=6 status=none)" MIDDLE
check_eq "tail" "$(tail -c 4 "$W/sparse")" TAIL
check "hole 1 zeros" cmp <(dd if="$W/sparse" bs=4096 skip=1 count=4000 status=none) <(head -c $((4000 * 4096)) /dev/zero)
check "hole 2 zeros" cmp <(dd if="$W/sparse" bs=1M skip=17 count=14 status=none) <(head -c $((14 * 1048576)) /dev/zero)
# write beyond EOF leaves a hole; shrink then extend reads zeros
printf 'X' | dd of="$W/grow" bs=1 seek=1000000 status=none
check_eq "grow size" "$(stat -c %s "$W/grow")" 1000001
check "grow hole zeros" cmp <(head -c 1000000 "$W/grow") <(head -c 1000000 /dev/zero)
head -c 200000 /dev/urandom >"$W/shrink"
truncate -s 1000 "$W/shrink"
truncate -s 300000 "$W/shrink"
drop_caches
check "shrink-extend zeros" cmp <(tail -c 299000 "$W/shrink") <(head -c 299000 /dev/zero)
