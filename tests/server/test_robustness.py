"""Bad input, many clients, independent clients, and the real process."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import typing
from dataclasses import fields

import pytest
import trio

from ninep_server import protocol as p
from ninep_server.client import NinepError

from ..servers import require, start_ninep

O = p.OpenFlags


def _random_frames(rng: random.Random, n: int) -> list[bytes]:
    """Random, truncated, bit-flipped and well-formed frames of every type."""
    valid = [p.encode(_random_message(rng, cls)) for cls in p.ALL_MESSAGES for _ in range(3)]
    frames = []
    for _ in range(n):
        base = bytearray(rng.choice(valid))
        how = rng.randrange(5)
        if how == 0:  # random garbage with a plausible size
            body = rng.randbytes(rng.randrange(0, 64))
            base = bytearray((7 + len(body)).to_bytes(4, "little") + bytes([rng.randrange(256)]) + rng.randbytes(2) + body)
        elif how == 1:  # flip bits but keep the size field right
            for _ in range(rng.randrange(1, 4)):
                i = rng.randrange(4, len(base))
                base[i] ^= 1 << rng.randrange(8)
        elif how == 2:  # truncate or extend the body, fixing the size field
            if rng.random() < 0.5 and len(base) > 7:
                base = base[: rng.randrange(7, len(base))]
            else:
                base += rng.randbytes(rng.randrange(1, 8))
            base[0:4] = len(base).to_bytes(4, "little")
        # how 3, 4: a valid frame of a random type (fids mostly unknown)
        frames.append(bytes(base))
    return frames


def _random_message(rng: random.Random, cls) -> p.Message:
    hints = typing.get_type_hints(cls, include_extras=True)
    small = lambda: rng.choice([0, 1, 2, 3, rng.randrange(2**32)])  # noqa: E731 - fids that may exist
    make = {
        "B": lambda: rng.randrange(256),
        "H": lambda: rng.randrange(2**16),
        "I": small,
        "Q": lambda: rng.randrange(2**64),
        "q": lambda: rng.randrange(2**64) - 2**63,
        "s": lambda: rng.choice([b"", b"..", b"x", b"keep", b"a/b", rng.randbytes(rng.randrange(300))]),
        "d": lambda: rng.randbytes(rng.randrange(100)),
        "qid": lambda: p.Qid(rng.randrange(256), rng.randrange(2**32), rng.randrange(2**64)),
        "names": lambda: [rng.choice([b"..", b"keep", b"data", b"x"]) for _ in range(rng.randrange(4))],
        "qids": lambda: [],
    }
    kwargs = {f.name: make[hints[f.name].__metadata__[0]]() for f in fields(cls) if f.name != "tag"}
    return cls(**kwargs, tag=rng.randrange(2**16))


async def _blast(address: str, frames: list[bytes]) -> None:
    """Send frames on fresh connections; the server may close any of them."""
    from ninep_server.address import parse_address

    addr = parse_address(address)
    i = 0
    while i < len(frames):
        stream = await trio.open_tcp_stream(addr.host, addr.port)
        try:
            # start every connection properly, then misbehave
            await stream.send_all(p.encode(p.Tversion(msize=65536, version=p.VERSION_9P2000L, tag=p.NOTAG)))
            await stream.send_all(p.encode(p.Tattach(fid=1, afid=p.NOFID, uname=b"root", aname=b"", n_uname=0, tag=1)))
            for frame in frames[i : i + 500]:
                await stream.send_all(frame)
            i += 500
            with trio.move_on_after(0.5):
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            i += 500
        finally:
            await stream.aclose()


async def test_fuzz_live_server(live):
    rng = random.Random(1234)
    async with live.connect() as c:
        await c.makedirs(b"keep")
        await c.write_file(b"keep/data", b"precious")
    frames = _random_frames(rng, 10_000)
    await _blast(live.tcp, frames)
    async with live.connect() as c:
        assert await c.read_file(b"keep/data") == b"precious"
        await c.write_file(b"after", b"still works")
        assert await c.read_file(b"after") == b"still works"
    await live.server.commit()
    assert live.store.check() == []


async def test_oversized_frame_closes_only_that_connection(live):
    async with live.connect(msize=8192) as good:
        stream = await trio.open_tcp_stream("127.0.0.1", int(live.tcp.rsplit(":", 1)[1]))
        await stream.send_all(p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG)))
        await stream.receive_some(4096)
        await stream.send_all((100_000).to_bytes(4, "little") + bytes([p.MsgType.TWRITE]) + b"\x01\x00")
        with trio.fail_after(5):
            while await stream.receive_some(4096):
                pass  # the server closes this connection
        await stream.aclose()
        await good.write_file(b"ok", b"fine")


async def test_fid_limit(tmp_path, nursery):
    from ninep_server.config import ServerConfig

    from .conftest import start_live

    live = await start_live(tmp_path, nursery, ServerConfig(max_fids_per_connection=8))
    try:
        async with live.connect() as c:
            fids = [await c.walk_path(b"") for _ in range(7)]  # + the root fid = 8
            with pytest.raises(NinepError) as info:
                await c.walk_path(b"")
            assert info.value.errno == errno.EMFILE
            await c.clunk(fids[0])
            await c.walk_path(b"")
    finally:
        await live.server.shutdown()
        live.store.close()


async def test_32_connections_with_overlapping_operations(live):
    files = [f"f{i}".encode() for i in range(8)]
    scratch = [b"scratch0", b"scratch1"]
    dirs = [f"d{i}".encode() for i in range(4)]
    written: set[bytes] = set()
    unexpected: list[str] = []
    expected_errnos = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR}

    async def worker(n: int):
        rng = random.Random(n)
        async with live.connect() as c:
            root = await c.walk_path(b"")
            for step in range(200):
                op = rng.randrange(8)
                name = rng.choice(files)
                try:
                    if op <= 1:  # atomic replace: write a private temp file, rename it over
                        content = f"{n}:{step}:".encode() * rng.randrange(1, 300)
                        written.add(content)
                        tmp = f"tmp-{n}".encode()
                        await c.write_file(tmp, content)
                        await c.renameat(root, tmp, root, name)
                    elif op == 2:
                        await c.write_file(rng.choice(scratch), f"{n}:{step}".encode() * rng.randrange(1, 50))
                    elif op == 3:
                        await c.read_file(name)
                    elif op == 4:
                        await c.unlink(name)
                    elif op == 5:
                        d = rng.choice(dirs)
                        await c.makedirs(d + b"/sub" * rng.randrange(2))
                        await c.write_file(d + b"/" + name, b"x")
                    elif op == 6:
                        await c.renameat(root, rng.choice(files), root, name)
                    else:
                        await c.listdir(rng.choice(dirs))
                except NinepError as exc:
                    if exc.errno not in expected_errnos:
                        unexpected.append(f"worker {n} op {op}: {exc}")

    async with trio.open_nursery() as n:
        for i in range(32):
            n.start_soon(worker, i)
    assert unexpected == []
    async with live.connect() as c:
        present = {e.name for e in await c.listdir(b"")}
        for name in files:
            if name in present:
                # each file holds exactly the data of one complete write sequence
                assert await c.read_file(name) in written, f"{name!r} holds content no writer wrote"
        for d in dirs:
            if d in present:
                st = await c.stat(d)
                subdirs = [e for e in await c.listdir(d) if e.type == p.DT_DIR]
                assert st.nlink == 2 + len(subdirs)
                for e in await c.listdir(d):
                    if e.type == p.DT_REG:
                        assert (await c.stat(d + b"/" + e.name)).nlink == 1
    await live.server.commit()
    assert live.store.check() == []


async def test_diodcat_and_diodls_read_what_ninep_serves(live, tmp_path):
    import shutil

    diodcat = shutil.which("diodcat") or "/usr/sbin/diodcat"
    diodls = shutil.which("diodls") or "/usr/sbin/diodls"
    require(os.path.exists(diodcat) and os.path.exists(diodls), "diod's clients are not installed")
    payload = os.urandom(300_000)
    async with live.connect() as c:
        await c.makedirs(b"sub")
        await c.write_file(b"sub/blob", payload)
        await c.write_file(b"hello.txt", b"hello from ninep\n")
    host = live.tcp[4:]
    out = await trio.run_process([diodcat, "-s", host, "-a", "main", "hello.txt"], capture_stdout=True)
    assert out.stdout == b"hello from ninep\n"
    out = await trio.run_process([diodcat, "-s", host, "-a", "main", "sub/blob"], capture_stdout=True)
    assert out.stdout == payload
    out = await trio.run_process([diodls, "-s", host, "-a", "main"], capture_stdout=True)
    assert set(out.stdout.split()) >= {b"hello.txt", b"sub"}
    out = await trio.run_process([diodls, "-l", "-s", host, "-a", "main", "sub"], capture_stdout=True)
    assert b"blob" in out.stdout and b"300000" in out.stdout


def test_serve_process_shuts_down_gracefully_and_keeps_data(tmp_path):
    """The real `ninep serve`: data written and fsynced survives SIGTERM and restart."""
    from ninep_server.client import connect

    sock = tmp_path / "s.sock"
    server = start_ninep(tmp_path / "store", listen=("tcp:127.0.0.1:0", f"unix:{sock}"))
    try:
        assert os.stat(sock).st_mode & 0o777 == 0o600

        async def write():
            async with connect(server.address, uname=b"root", n_uname=0) as c:
                await c.write_file(b"kept", b"across restarts", fsync=True)
                await c.write_file(b"unsynced-but-committed-at-exit", b"yes")

        trio.run(write)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        assert not sock.exists()
    finally:
        server.stop()
    server = start_ninep(tmp_path / "store")
    try:

        async def read():
            async with connect(server.address, uname=b"root", n_uname=0) as c:
                assert await c.read_file(b"kept") == b"across restarts"
                assert await c.read_file(b"unsynced-but-committed-at-exit") == b"yes"

        trio.run(read)
    finally:
        server.stop()


def test_serve_refuses_a_store_that_is_in_use(tmp_path):
    server = start_ninep(tmp_path / "store")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ninep_server", "serve", "--store", str(tmp_path / "store"), "--listen", "tcp:127.0.0.1:0"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode != 0
        assert "store" in proc.stderr
    finally:
        server.stop()
