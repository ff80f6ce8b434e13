"""`ninep snapshot send | ninep snapshot receive` end to end: real processes, real stores,
on stopped stores (the CLI opens them) and through running servers (admin jobs)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


from cas import Store

from ..cas.test_sendrecv import build, change, walk
from ..readme_blocks import blocks
from ..servers import start_ninep

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
NINEP = [sys.executable, "-m", "ninep_server"]


def sh(cmd: str, cwd, ok=True) -> subprocess.CompletedProcess:
    """Run a shell line with ``ninep`` on PATH (this checkout's CLI)."""
    bin_dir = Path(cwd) / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        wrapper = bin_dir / "ninep"
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m ninep_server "$@"\n')
        wrapper.chmod(0o755)
    env = {**ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=env,
                          capture_output=True, timeout=120)
    if ok:
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc


def make_source(path: Path) -> None:
    with Store.open(str(path), create=True) as s:
        s.create_dataset("main")
        build(s.volume("main"))


def snapshot_tree(path: Path, dataset: str, snap: str) -> dict:
    with Store.open(str(path)) as s:
        return walk(s.snapshot_volume(dataset, snap))


def edit_source(path: Path) -> None:
    with Store.open(str(path)) as s:
        v = s.volume("main")
        change(v, v.resolve(b"/big").ino)


def write_through_9p(server, changes: dict) -> None:
    """Change the served dataset ``main`` as a client would: write files (None: unlink)."""
    import trio

    from ninep_server.client import connect

    async def run():
        async with connect(server.address, aname=b"main") as c:
            for path, data in changes.items():
                if data is None:
                    await c.unlink(path)
                else:
                    await c.write_file(path, data, fsync=True)

    trio.run(run)


def test_send_receive_on_stopped_stores(tmp_path):
    make_source(tmp_path / "a")
    sh("ninep snapshot create --store a main@s1", tmp_path)
    sh("ninep snapshot send --store a main@s1 | ninep snapshot receive --store b copy", tmp_path)
    edit_source(tmp_path / "a")
    sh("ninep snapshot create --store a main@s2", tmp_path)
    sh("ninep snapshot have --store b copy > have.txt", tmp_path)
    out = sh("ninep snapshot send --store a main@s2 --since main@s1 --have have.txt -o inc.stream",
             tmp_path)
    assert b"sent incremental stream" in out.stderr
    assert (tmp_path / "inc.stream").stat().st_mode & 0o777 == 0o600
    out = sh("ninep snapshot receive --store b copy -i inc.stream", tmp_path)
    assert out.stdout.startswith(b"received copy@s2 (incremental, base s1)")
    for snap in ("s1", "s2"):
        assert snapshot_tree(tmp_path / "a", "main", snap) == snapshot_tree(tmp_path / "b", "copy", snap)
    diff_a = sh("ninep snapshot diff --store a main@s1 main@s2", tmp_path).stdout
    assert diff_a and diff_a == sh("ninep snapshot diff --store b copy@s1 copy@s2", tmp_path).stdout
    assert sh("ninep snapshot diff --store b copy@s2", tmp_path).stdout == b""  # live == received
    # a second full copy next to the first carries no chunk: the have list names them all
    sh("ninep snapshot have --store b other > have2.txt", tmp_path)
    out = sh("ninep snapshot send --store a main@s2 --have have2.txt | "
             "ninep snapshot receive --store b other", tmp_path)
    assert b", 0 chunks (0 B)" in out.stdout and b", 0 chunks (0 B)" in out.stderr


def test_bad_streams_fail_clearly_and_change_nothing(tmp_path):
    make_source(tmp_path / "a")
    sh("ninep snapshot create --store a main@s1", tmp_path)
    sh("ninep snapshot send --store a main@s1 -o full.stream", tmp_path)
    data = (tmp_path / "full.stream").read_bytes()
    (tmp_path / "cut.stream").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    (tmp_path / "flipped.stream").write_bytes(bytes(flipped))
    sh("ninep dataset create --store b keep", tmp_path)
    before = sorted(p.name for p in (tmp_path / "b" / "chunks").rglob("*") if p.is_file())
    out = sh("ninep snapshot receive --store b copy -i cut.stream", tmp_path, ok=False)
    assert out.returncode == 1 and b"truncated" in out.stderr, out.stderr
    out = sh("ninep snapshot receive --store b copy < flipped.stream", tmp_path, ok=False)
    assert out.returncode == 1 and (b"corrupt" in out.stderr or b"does not match" in out.stderr), out.stderr
    listed = sh("ninep dataset list --store b", tmp_path).stdout
    assert b"keep" in listed and b"copy" not in listed
    assert sorted(p.name for p in (tmp_path / "b" / "chunks").rglob("*") if p.is_file()) == before
    # an incremental to a store without its base
    sh("ninep snapshot create --store a main@s2", tmp_path)
    out = sh("ninep snapshot send --store a main@s2 --since s1 | ninep snapshot receive --store b keep",
             tmp_path, ok=False)
    assert out.returncode == 1 and b"does not have the stream's base snapshot" in out.stderr, out.stderr


def test_send_refuses_a_terminal(tmp_path):
    make_source(tmp_path / "a")
    sh("ninep snapshot create --store a main@s1", tmp_path)
    import pty
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(tmp_path)
        os.execvpe(NINEP[0], NINEP + ["snapshot", "send", "--store", "a", "main@s1"], ENV)
    out = b""
    while True:
        try:
            piece = os.read(fd, 4096)
        except OSError:
            break
        if not piece:
            break
        out += piece
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1
    assert b"refusing to write a binary stream to a terminal" in out


def test_send_receive_through_running_servers(tmp_path):
    """Both stores served: the pipe's bytes pass through FIFOs to admin jobs on each side."""
    make_source(tmp_path / "a")
    Store.open(str(tmp_path / "b"), create=True).close()
    sa = start_ninep(tmp_path / "a")
    sb = start_ninep(tmp_path / "b")
    try:
        sh("ninep snapshot create --store a main@s1", tmp_path)
        sh("ninep snapshot send --store a main@s1 | ninep snapshot receive --store b copy", tmp_path)
        assert b"copy@s1" in sh("ninep snapshot list --store b", tmp_path).stdout
        write_through_9p(sa, {b"small": b"changed while served", b"dir/sub/f001": None})
        sh("ninep snapshot create --store a main@s2", tmp_path)
        sh("ninep snapshot have --store b copy > have.txt", tmp_path)
        assert sh("head -3 have.txt", tmp_path).stdout.splitlines()[2].startswith(b"snapshot ")
        out = sh("ninep snapshot send --store a main@s2 --since main@s1 --have have.txt | "
                 "ninep snapshot receive --store b copy", tmp_path)
        assert b"(incremental, base s1)" in out.stdout
        # a file path instead of a pipe: the job writes it on the server's host
        sh("ninep snapshot send --store a main@s2 -o s2.stream", tmp_path)
        sh("ninep snapshot receive --store b -i s2.stream again", tmp_path)
        # a bad stream through the server: the job fails and says why
        (tmp_path / "cut.stream").write_bytes((tmp_path / "s2.stream").read_bytes()[:1000])
        out = sh("ninep snapshot receive --store b broken < cut.stream", tmp_path, ok=False)
        assert out.returncode == 1 and b"truncated" in out.stderr, out.stderr
        assert b"broken" not in sh("ninep dataset list --store b", tmp_path).stdout
    finally:
        sa.stop()
        sb.stop()
    for snap in ("s1", "s2"):
        assert snapshot_tree(tmp_path / "a", "main", snap) == snapshot_tree(tmp_path / "b", "copy", snap)
    assert snapshot_tree(tmp_path / "a", "main", "s2") == snapshot_tree(tmp_path / "b", "again", "s2")
    assert not [p for p in Path("/tmp").glob("ninep-stream-*") if p.stat().st_uid == os.getuid()
                and stat.S_ISDIR(p.stat().st_mode) and any(p.iterdir())]


README = (ROOT / "README.md").read_text()


def test_readme_replication_commands_run(tmp_path):
    """The README's replication block, line by line: a served source, a stopped backup store."""
    make_source(tmp_path / "ninep-data")
    server = start_ninep(tmp_path / "ninep-data")
    try:
        block = blocks(README)["replicate"]
        for line in block.splitlines():
            if line.startswith("ninep snapshot create main@tuesday"):  # a day of changes
                write_through_9p(server, {b"small": b"tuesday", b"new-file": b"n" * 100_000})
            if line.strip() and not line.startswith("#"):
                sh(line.split("  #", 1)[0], tmp_path)
    finally:
        server.stop()
    for snap in ("monday", "tuesday"):
        assert snapshot_tree(tmp_path / "ninep-data", "main", snap) == \
            snapshot_tree(tmp_path / "backup", "main", snap)
