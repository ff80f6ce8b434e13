"""Property: no well-formed request, whatever its integer fields hold, can hurt the store.

hypothesis drives a live ``ninep serve`` with requests whose integer fields
take the values at the edges of every width (0, 1, 2^31±1, 2^32-1, 2^63±1,
2^64-1) while a canary client in another thread writes, fsyncs and verifies
files. Every refused request must get a precise errno (never EIO), the canary
never sees an error, nothing is logged at error level, and after a restart on
the same store the canary's files are intact and fsck is clean.
"""

from __future__ import annotations

import errno
import itertools
import json
import threading

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas import Store
from cas.fsck import fsck
from ninep_server import protocol as p
from ninep_server.client import NinepError, connect

from ..servers import start_ninep

EDGES = (0, 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1)
U8 = st.sampled_from((0, 1, 2, 3, 127, 255))
U32 = st.sampled_from(tuple(v & 0xFFFFFFFF for v in EDGES))
U64 = st.sampled_from(EDGES)
I64 = U64.map(lambda v: v - 2**64 if v >= 2**63 else v)  # what Linux sends for a signed tv_sec
MODE = st.one_of(U32, st.sampled_from((0o644, 0o20644, 0o60600, 0o10644, 0o140755, 0o177777)))

O = p.OpenFlags
FILE = 1001  # fid numbers of one example: the file, open read-write
DIR = 1002   # its directory
SPARE = 1003

OPS = st.one_of(
    st.builds(lambda *a: p.Tsetattr(FILE, *a), U32, MODE, U32, U32, U64, I64, U64, I64, U64),
    st.builds(lambda m, ma, mi, g: p.Tmknod(DIR, b"node", m, ma, mi, g), MODE, U32, U32, U32),
    st.builds(lambda t, f, s, ln, pid: p.Tlock(FILE, t, f & ~p.LockFlags.BLOCK, s, ln, pid, b"x"),
              U8, U32, U64, U64, U32),
    st.builds(lambda t, s, ln, pid: p.Tgetlock(FILE, t, s, ln, pid, b"x"), U8, U64, U64, U32),
    st.builds(lambda off: p.Twrite(FILE, off, b"abc"), U64),
    st.builds(lambda off, n: p.Tread(FILE, off, n), U64, U32),
    st.builds(lambda off, n: p.Treaddir(DIR, off, n), U64, U32),
    st.builds(lambda flags, mode, gid: p.Tlcreate(SPARE, b"created", flags, mode, gid), U32, MODE, U32),
    st.builds(lambda mode, gid: p.Tmkdir(DIR, b"sub", mode, gid), MODE, U32),
    st.builds(lambda gid: p.Tsymlink(DIR, b"link", b"target", gid), U32),
    st.builds(lambda size, flags: p.Txattrcreate(SPARE, b"user.x", size, flags), U64, U32),
    st.builds(lambda flags: p.Tlopen(SPARE, flags), U32),
    st.builds(lambda flags: p.Tunlinkat(DIR, b"node", flags), U32),
    st.builds(lambda mask: p.Tgetattr(FILE, mask), U64),
    st.builds(lambda ds: p.Tfsync(FILE, ds), U32),
)


async def _example(address: str, n: int, ops: list[p.Message]) -> list[int]:
    """Run ``ops`` on a fresh file ``play/N/f``; return the errnos of refused requests."""
    errnos = []
    async with connect(address, n_uname=0) as c:
        await c.makedirs(f"play/{n}")
        await c.walk(c.root_fid, DIR, [b"play", str(n).encode()])
        await c.walk(DIR, FILE, [])
        await c.lcreate(FILE, b"f", O.RDWR, 0o644)
        for op in ops:
            await c.walk(DIR, SPARE, [])  # a fresh unopened fid for the ops that need one
            try:
                await c.rpc(op)
            except NinepError as exc:
                errnos.append(exc.errno)
            if isinstance(op, p.Txattrcreate) and not errnos[-1:]:
                await c.rpc(p.Twrite(SPARE, 0, b"v" * min(op.attr_size, 8)))
            try:
                await c.clunk(SPARE)
            except NinepError:
                pass  # an xattr value of the wrong length is refused at clunk: fine
        await c.fsync(FILE)  # commits still work after whatever came before
        await c.clunk(FILE)
        await c.clunk(DIR)
    return errnos


class Canary:
    """Writes, fsyncs and reads back files in its own thread, until stopped."""

    def __init__(self, address: str):
        self.address = address
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.synced: dict[bytes, bytes] = {}
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    async def _main(self) -> None:
        async with connect(self.address, n_uname=0) as c:
            await c.makedirs(b"canary")
            for i in itertools.count():
                if self.stop.is_set():
                    return
                name = b"canary/%d" % (i % 50)
                data = bytes([i % 251]) * (1000 + 97 * i % 200_000)
                await c.write_file(name, data, fsync=True)
                if await c.read_file(name) != data:
                    raise AssertionError(f"canary read back wrong data from {name!r}")
                self.synced[name] = data


def test_extreme_values_never_hurt_the_store(tmp_path):
    store_dir = tmp_path / "store"
    Store.open(str(store_dir), create=True).close()
    with Store.open(str(store_dir)) as s:
        s.create_dataset("main")
    server = start_ninep(store_dir)
    log_lines: list[str] = []
    drain = threading.Thread(target=lambda: log_lines.extend(server.proc.stderr), daemon=True)
    drain.start()
    canary = Canary(server.address)
    canary.thread.start()
    counter = itertools.count()
    refused: list[int] = []
    try:
        @settings(max_examples=150, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(OPS, min_size=1, max_size=8))
        def run(ops):
            refused.extend(trio.run(_example, server.address, next(counter), ops))

        run()
    finally:
        canary.stop.set()
        canary.thread.join(60)
        server.stop()
    assert canary.errors == []
    assert canary.synced, "the canary never completed a write"
    assert server.proc.returncode == 0
    drain.join(10)
    assert errno.EIO not in refused
    assert len(set(refused)) > 3  # the examples did reach the refusals
    levels = [json.loads(line).get("level") for line in log_lines if line.startswith("{")]
    errors = [line for line, level in zip(log_lines, levels) if level == "error"]
    assert errors == []

    # A restart on the same store serves what the canary fsynced.
    again = start_ninep(store_dir)
    try:
        async def verify():
            async with connect(again.address, n_uname=0) as c:
                for name, data in canary.synced.items():
                    assert await c.read_file(name) == data
        trio.run(verify)
    finally:
        again.stop()
    assert again.proc.returncode == 0
    with Store.open(str(store_dir)) as s:
        report = fsck(s)
        assert report.clean, report.damage
