. /job/workloads/lib.sh
second_mount /mnt/b
DB=$W/test.db
DB2=/mnt/b/wl-$WL/test.db
sqlite3 "$DB" 'PRAGMA journal_mode=DELETE; CREATE TABLE t (id INTEGER PRIMARY KEY, writer INTEGER, n INTEGER, payload TEXT);' >/dev/null
writer() {   # writer ID DBPATH: 20 transactions of 3 rows
    local id=$1 db=$2 i
    for i in $(seq 1 20); do
        sqlite3 "$db" "PRAGMA busy_timeout=120000;
            BEGIN IMMEDIATE;
            INSERT INTO t (writer, n, payload) VALUES ($id, $i, printf('%.500c', 'x'));
            INSERT INTO t (writer, n, payload) VALUES ($id, $i, hex(randomblob(100)));
            INSERT INTO t (writer, n, payload) VALUES ($id, $i, 'w$id');
            COMMIT;" >/dev/null || { echo "writer $id failed at $i" >&2; return 1; }
    done
}
pids=
writer 1 "$DB" & pids="$pids $!"
writer 2 "$DB2" & pids="$pids $!"
writer 3 "$DB" & pids="$pids $!"
writer 4 "$DB2" & pids="$pids $!"
for p in $pids; do wait "$p" || fail "a writer failed"; done
check_eq "rows" "$(sqlite3 "$DB" 'SELECT count(*) FROM t')" 240
check_eq "rows per writer" "$(sqlite3 "$DB2" 'SELECT group_concat(c) FROM (SELECT count(*) c FROM t GROUP BY writer ORDER BY writer)')" "60,60,60,60"
check_eq "integrity_check" "$(sqlite3 "$DB" 'PRAGMA integrity_check')" ok
drop_caches
check_eq "integrity_check (other mount)" "$(sqlite3 "$DB2" 'PRAGMA integrity_check')" ok
