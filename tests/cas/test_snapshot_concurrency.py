"""Commits and snapshots racing writers never record a torn file.

A group commit stores chunk buffers outside the store lock while writes go
on. It must not then record an inode size that covers bytes its extents do
not hold (the catalog, and any snapshot taken after that commit, would read
zeros where data was written). Writers here append 8-byte sequence records,
so any committed or snapshotted state must be an exact prefix of the stream.
"""

from __future__ import annotations

import stat
import threading
import time

from cas import Store

CS = 16384   # small chunks: many whole-chunk writes and chunk boundaries per second
REC = 8
TAIL = 8 * CS  # a tear can only be near the end of an appended file: check the tail


def records(first: int, count: int) -> bytes:
    return b"".join(k.to_bytes(REC, "little") for k in range(first, first + count))


def tail_start(size: int) -> int:
    return max(0, size - TAIL) // CS * CS


def torn(data: bytes, start: int = 0) -> int | None:
    """First record of ``data`` (read from byte ``start``) not its sequence number, or None."""
    first, n = start // REC, len(data) // REC
    if len(data) % REC == 0 and data == records(first, n):
        return None
    return first + next((k for k in range(n)
                         if data[k * REC:(k + 1) * REC] != records(first + k, 1)), n)


class Writers:
    """Two appenders: 8-byte records (buffer path) and 1.5-chunk writes (whole chunks)."""

    def __init__(self, vol):
        self.vol = vol
        self.inos = {}
        for name in (b"small", b"big"):
            ino = vol.create(vol.root, name, stat.S_IFREG | 0o644, 0, 0).ino
            vol.open(ino)
            self.inos[name] = ino
        self.done = {b"small": 0, b"big": 0}   # records acknowledged so far
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(name, per), daemon=True)
                        for name, per in ((b"small", 1), (b"big", (CS + CS // 2) // REC))]

    def _run(self, name, per):
        ino, seq = self.inos[name], 0
        try:
            while not self.stop.is_set():
                self.vol.write(ino, seq * REC, records(seq, per))
                seq += per
                self.done[name] = seq
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()
        assert not self.errors, self.errors


def committed_tail(store: Store, ino: int) -> tuple[int, bytes]:
    """(start, bytes from start to the end) of the file as the catalog's live rows
    describe it: what a crash right now would leave."""
    cat = store.catalog
    (size,) = cat.query("SELECT size FROM inodes WHERE ino = ? AND died IS NULL", [ino])[0]
    exts = {idx: (h, ln) for idx, h, ln in cat.query(
        "SELECT idx, hash, length FROM extents WHERE ino = ? AND died IS NULL", [ino])}
    start = tail_start(size)
    out = bytearray()
    for idx in range(start // CS, (size + CS - 1) // CS):
        want = min(CS, size - idx * CS)
        h, ln = exts.get(idx, (None, 0))
        piece = store.chunks.get(h)[:min(ln, want)] if h else b""
        out += piece + bytes(want - len(piece))
    return start, bytes(out)


def test_commits_racing_writers_record_untorn_files(tmp_path):
    """After every commit the catalog's live state is a prefix of what was written."""
    with Store.open(str(tmp_path / "s"), create=True, chunk_size=CS) as store:
        store.create_dataset("main")
        vol = store.volume("main")
        checked = 0
        with Writers(vol) as w:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline or checked < 5:
                time.sleep(0.01)
                with store.commits.commit_lock:  # no other commit between this one and the check
                    store.commits.commit_locked()
                    for name, ino in w.inos.items():
                        start, data = committed_tail(store, ino)
                        bad = torn(data, start)
                        assert bad is None, (f"commit {checked}: {name!r} size "
                                             f"{start + len(data)} torn at record {bad}")
                checked += 1
        assert checked >= 5


def test_snapshots_racing_writers_and_commits_are_untorn_prefixes(tmp_path):
    """Every snapshot is a prefix holding every write acknowledged before it was requested."""
    with Store.open(str(tmp_path / "s"), create=True, chunk_size=CS) as store:
        store.create_dataset("main")
        vol = store.volume("main")
        stop = threading.Event()

        def committer():
            while not stop.is_set():
                time.sleep(0.01)
                store.commit()

        c = threading.Thread(target=committer, daemon=True)
        taken: list[tuple[str, dict]] = []
        with Writers(vol) as w:
            c.start()
            try:
                # at least 5 s and at least 5 snapshots (one takes ~1 s here, more under load)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline or len(taken) < 5:
                    time.sleep(0.02)
                    name = f"s{len(taken)}"
                    before = dict(w.done)
                    store.create_snapshot("main", name)
                    taken.append((name, before))
            finally:
                stop.set()
                c.join()
        assert len(taken) >= 5
        for name, before in taken:
            sv = store.snapshot_volume("main", name)
            for fname, ino in w.inos.items():
                a = sv.lookup(sv.root, fname)
                start = tail_start(a.size)
                bad = torn(sv.read(a.ino, start, a.size - start), start)
                assert bad is None, f"{name}: {fname!r} size {a.size} torn at record {bad}"
                assert a.size // REC >= before[fname], (
                    f"{name}: {fname!r} lacks writes acknowledged before the snapshot")
