"""Benchmark snapshot send and receive: stream sizes against the data changed, and rates.

Builds a source store (``--mib`` MiB of random data in 8 MiB files plus
``--files`` small files), takes snapshot ``s1``, then changes a part of it
(``--change-pct`` percent of the large files' chunks rewritten, one small
file in ten rewritten, a few files deleted and added) and takes ``s2``.
Each repetition then, into a fresh receiving store:

- ``full``: send ``s1`` to a file, receive it;
- ``incremental``: send ``s2`` since ``s1``, receive it;
- ``full+have``: send ``s2`` in full with the receiver's have list, and
  receive it as another dataset (every chunk is there already).

Reports, as the median over repetitions, each stream's size against the
logical data changed, and the send and receive rates (stream bytes per
second, through files on the same disk). Writes ``bench/results/sendrecv-<time>.md``
and ``.json`` unless ``--no-save``.

    python -m bench.sendrecv [--mib 64] [--files 2000] [--change-pct 5] [--reps 3]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from cas import Store
from cas.receive import receive_snapshot
from cas.send import read_have, send_snapshot, write_have

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

BIG = 8 << 20
RESULTS = Path(__file__).resolve().parent / "results"


def build_source(path: str, mib: int, files: int, change_pct: float, seed: int = 1) -> dict:
    """The source store with main@s1 and main@s2; returns what the change wrote."""
    rnd = random.Random(seed)
    with Store.open(path, create=True) as s:
        s.create_dataset("main")
        v = s.volume("main")
        cs = s.chunk_size
        bigs = []
        for i in range(max(1, mib * (1 << 20) // BIG)):
            a = v.create(v.root, b"big%d" % i, 0o644, 0, 0)
            for off in range(0, BIG, 1 << 20):
                v.write(a.ino, off, rnd.randbytes(1 << 20))
            bigs.append(a.ino)
            s.commit()
        d = v.mkdir(v.root, b"small", 0o755, 0, 0).ino
        small = []
        for i in range(files):
            a = v.create(d, b"f%05d" % i, 0o644, 0, 0)
            v.write(a.ino, 0, rnd.randbytes(rnd.randrange(100, 8000)))
            small.append(a.ino)
        s.create_snapshot("main", "s1")
        changed = {"bytes": 0, "files": 0}
        nchunks = BIG // cs
        for ino in bigs:
            for idx in rnd.sample(range(nchunks), max(1, int(nchunks * change_pct / 100))):
                v.write(ino, idx * cs, rnd.randbytes(cs))
                changed["bytes"] += cs
            changed["files"] += 1
        for ino in small[::10]:
            data = rnd.randbytes(rnd.randrange(100, 8000))
            v.setattr(ino, size=0)
            v.write(ino, 0, data)
            changed["bytes"] += len(data)
            changed["files"] += 1
        for i in range(0, files, 50):
            v.unlink(d, b"f%05d" % i)
            a = v.create(d, b"new%05d" % i, 0o644, 0, 0)
            data = rnd.randbytes(4000)
            v.write(a.ino, 0, data)
            changed["bytes"] += len(data)
            changed["files"] += 2
        s.create_snapshot("main", "s2")
        changed["logical"] = v.logical_bytes()
    return changed


def _send(src: Store, path: str, snap: str, **kw) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        r = send_snapshot(src, "main", snap, f, **kw)
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0, r.__dict__


def _receive(dst: Store, path: str, dataset: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        receive_snapshot(dst, dataset, f)
    return time.perf_counter() - t0


def one_rep(src_path: str, work: str) -> dict:
    out = {}
    dst_path = os.path.join(work, "dst")
    shutil.rmtree(dst_path, ignore_errors=True)
    stream = os.path.join(work, "stream")
    with Store.open(src_path) as src, Store.open(dst_path, create=True) as dst:
        for kind, snap, kw, ds in (("full", "s1", {}, "copy"),
                                   ("incremental", "s2", {"since": "s1"}, "copy")):
            t_send, rep = _send(src, stream, snap, **kw)
            t_recv = _receive(dst, stream, ds)
            out[kind] = {"stream_bytes": rep["stream_bytes"], "chunks": rep["chunks"],
                         "chunk_bytes": rep["chunk_bytes"], "send_s": t_send, "receive_s": t_recv}
        buf = io.BytesIO()
        write_have(dst, "copy2", buf)
        have = read_have(buf.getvalue().decode().splitlines())
        t_send, rep = _send(src, stream, "s2", have=have)
        t_recv = _receive(dst, stream, "copy2")
        out["full+have"] = {"stream_bytes": rep["stream_bytes"], "chunks": rep["chunks"],
                            "chunk_bytes": rep["chunk_bytes"], "send_s": t_send, "receive_s": t_recv}
    return out


def report(args, changed: dict, reps: list[dict]) -> str:
    mib = 1 << 20
    lines = [f"# Snapshot send and receive ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"Source: {args.mib} MiB in 8 MiB files + {args.files} small files "
             f"({changed['logical'] / mib:.1f} MiB logical at s2). s1 -> s2 changed "
             f"{changed['files']} files, {changed['bytes'] / mib:.2f} MiB of data "
             f"({args.change_pct}% of the large files' chunks). Median of {len(reps)} "
             f"repetitions (min-max); stream through a file on the same disk; "
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.", "",
             "| stream | size | size / data changed | chunks | send s | receive s | send MB/s | receive MB/s |",
             "|---|---|---|---|---|---|---|---|"]
    for kind in ("full", "incremental", "full+have"):
        rows = [r[kind] for r in reps]
        size = statistics.median(r["stream_bytes"] for r in rows)
        send = [r["stream_bytes"] / r["send_s"] / 1e6 for r in rows]
        recv = [r["stream_bytes"] / r["receive_s"] / 1e6 for r in rows]
        lines.append(f"| {kind} | {size / mib:.2f} MiB | {size / changed['bytes']:.2f} | "
                     f"{rows[0]['chunks']} | {statistics.median(r['send_s'] for r in rows):.3f} | "
                     f"{statistics.median(r['receive_s'] for r in rows):.3f} | {statistics.median(send):.0f} ({min(send):.0f}-{max(send):.0f}) | "
                     f"{statistics.median(recv):.0f} ({min(recv):.0f}-{max(recv):.0f}) |")
    lines += ["", "`size / data changed` compares each stream with the bytes the s1 -> s2 change "
              "wrote: an incremental stream should be near 1 (plus metadata rows), a full stream "
              "is the whole snapshot; `full+have` carries rows only, since the receiver already "
              "holds every chunk."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--change-pct", type=float, default=5.0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="ninep-sendrecv.", dir=args.dir)
    try:
        src = os.path.join(work, "src")
        changed = build_source(src, args.mib, args.files, args.change_pct)
        reps = [one_rep(src, work) for _ in range(args.reps)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(args, changed, reps)
    sys.stdout.write(text)
    if not args.no_save:
        stem = Path(args.out) / f"sendrecv-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps(
            {"args": vars(args), "changed": changed, "reps": reps}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
