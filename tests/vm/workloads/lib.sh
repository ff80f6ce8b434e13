# Sourced by every workload (bash).  Environment from the batch script:
#   W         this workload's own directory on the mount (cwd)
#   MNT       the export's automatic mount (/mnt/9p)
#   WL        workload name; ACCESS, CACHE, TRANS: the mount configuration
#   TEST_UID, TEST_GID: the unprivileged user for permission tests
set -eu -o pipefail
fail() { echo "FAIL[$WL]: $*" >&2; exit 1; }
check() {   # check DESCRIPTION COMMAND...   (the command must succeed)
    local what=$1; shift
    "$@" || fail "$what (command: $*)"
}
check_eq() {  # check_eq DESCRIPTION GOT WANT
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}
as_user() { setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --clear-groups -- "$@"; }
denied() {  # denied DESCRIPTION COMMAND...  (must fail)
    local what=$1; shift
    if "$@" 2>/dev/null; then fail "$what: was allowed (command: $*)"; fi
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# A second mount of the same export (a separate 9P connection).
second_mount() {  # second_mount DIR [EXTRA_OPTS]
    mountpoint -q "$1" || ninep-mount "$1" "${2:-}"
}
