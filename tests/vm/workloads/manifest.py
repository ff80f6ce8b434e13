# Guest side: describe a tree as the guest sees it, for the host to compare.
# One line per entry: type mode size uid gid nlink extra path, tab separated;
# extra is the sha256 of a regular file (up to 16 MiB, else '-') or the hex
# target of a symlink; path is hex (names may hold any byte but / and NUL).
import hashlib, os, stat, sys

root = sys.argv[1]
out = []
for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(dirnames) + sorted(filenames):
        p = os.path.join(dirpath, name)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        extra = "-"
        if stat.S_ISREG(st.st_mode):
            kind = "f"
            if st.st_size <= 16 << 20:
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                extra = h.hexdigest()
        elif stat.S_ISDIR(st.st_mode):
            kind = "d"
        elif stat.S_ISLNK(st.st_mode):
            kind = "l"
            extra = os.fsencode(os.readlink(p)).hex()
        else:
            kind = "o"
        out.append("\t".join([kind, "%o" % stat.S_IMODE(st.st_mode), str(st.st_size),
                              str(st.st_uid), str(st.st_gid), str(st.st_nlink), extra,
                              os.fsencode(rel).hex()]))
sys.stdout.write("\n".join(out) + "\n")
