. /job/workloads/lib.sh
python3 - "$W" <<'PY'
import os, sys, subprocess
w = sys.argv[1]
p = os.path.join(w, "victim")
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"hello")
os.unlink(p)
assert not os.path.exists(p), "still visible after unlink"
assert "victim" not in os.listdir(w)
os.write(fd, b" world")
os.lseek(fd, 0, 0)
assert os.read(fd, 100) == b"hello world", "read after unlink"
st = os.fstat(fd)
assert st.st_size == 11, st
os.ftruncate(fd, 5)
assert os.fstat(fd).st_size == 5
os.lseek(fd, 0, 0)
assert os.read(fd, 100) == b"hello"
os.pwrite(fd, b"!" * 70000, 100000)
assert os.fstat(fd).st_size == 170000
assert os.pread(fd, 10, 99995) == b"\0" * 5 + b"!" * 5
os.close(fd)
# another process keeps a descriptor while we remove the file
q = os.path.join(w, "held")
with open(q, "w") as f:
    f.write("held data\n")
proc = subprocess.Popen(["sh", "-c", 'exec 3<"$1"; echo ready; read x; cat <&3', "sh", q],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert proc.stdout.readline() == b"ready\n"
os.unlink(q)
out, _ = proc.communicate(b"go\n", timeout=60)
assert out == b"held data\n", out
# a same-named file created after the unlink is a different file
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
fd2 = os.open(p, os.O_RDWR)
os.unlink(p)
with open(p, "w") as f:
    f.write("new")
os.write(fd2, b"old")
os.lseek(fd, 0, 0)
assert os.read(fd, 10) == b"old"
assert open(p).read() == "new"
os.close(fd); os.close(fd2)
# rename over an open file
with open(os.path.join(w, "a"), "w") as f: f.write("A")
with open(os.path.join(w, "b"), "w") as f: f.write("B")
fa = open(os.path.join(w, "b"))
os.rename(os.path.join(w, "a"), os.path.join(w, "b"))
assert fa.read() == "B", "renamed-over file still readable"
assert open(os.path.join(w, "b")).read() == "A"
fa.close()
print("unlink_open ok")
PY
