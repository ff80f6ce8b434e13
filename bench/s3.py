"""python -m bench.s3: a store on S3 (SeaweedFS) against a local store, in one run.

    python -m bench.s3                       # 1 GiB, 3 interleaved repetitions
    python -m bench.s3 --size 256M --reps 3  # smaller: a few minutes on 2 cores
    python -m bench.s3 --endpoint http://127.0.0.1:8333   # an S3 server already running
                                             # (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set)

Starts SeaweedFS (``weed mini``, vm-images/seaweedfs.py) on free ports in a
temporary directory unless ``--endpoint`` is given, creates two stores (local
chunks, and chunks in ``s3://BUCKET/store``), serves each with its own
``ninep serve`` and measures, in every repetition, the backends in rotated
order (bench.servers.rotate):

- the S3 client's own PUT and GET rates (obstore, 8 threads) at the S3 store's
  chunk size and at 128 KiB: the ceiling (bench/s3ceiling.py);
- through ``ninep serve`` and the async client (bench/ninepload.py):
  sequential write + fsync, cold sequential read (server restarted, the S3
  store's local chunk cache emptied, the page cache dropped), warm read (the
  same file again), small-file creates + fsync.

Writes ``--out``/s3-<UTC time>.md and .json. Any workload that fails, or a
row without a figure, aborts the run with status 2 and writes no results.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ninep_server import protocol

from . import ninepload, s3ceiling, s3report
from .report import machine_facts, save
from .servers import ROOT, BenchError, Ninep, rotate, tempdir

sys.path.insert(0, str(ROOT / "vm-images"))
from seaweedfs import SeaweedFS  # noqa: E402

HERE = Path(__file__).resolve().parent
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
LOCAL_CHUNK = 128 * KiB
MEASURES = ("seq_write", "cold_read", "warm_read", "creates")


def log(msg: str) -> None:
    print(f"[bench.s3 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_size(text: str) -> int:
    """'256M', '1G', '64K' or a number of bytes."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": KiB, "M": MiB, "G": GiB}.get(text[-1:], 1)
    n = int(float(text[:-1] if mult > 1 else text) * mult)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text}")
    return n


def drop_page_cache() -> str | None:
    """Write back and drop the page cache; return why it could not, or None."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Backend:
    """One store and the ``ninep serve`` that serves it."""

    name: str                      # "local" or "s3"
    store: Path
    workdir: Path
    chunks: str | None             # None: local chunks; else s3://BUCKET/PREFIX
    chunk_size: int = 0
    location: str = ""
    server: Ninep | None = None
    cache_dirs: list[Path] = field(default_factory=list)

    def create(self, chunk_size: int | None) -> None:
        """Create the store in-process (the CLI has no init yet), note its chunk size."""
        from cas import Store

        kw = {} if chunk_size is None else {"chunk_size": chunk_size}
        if self.chunks is not None:
            kw["chunks"] = self.chunks
        self.workdir.mkdir(parents=True, exist_ok=True)
        store = Store.open(str(self.store), create=True, **kw)
        try:
            self.chunk_size = store.chunk_size
            self.location = getattr(store.chunks, "location", f"local:{self.store}/chunks")
        finally:
            store.close()
        # the S3 backend's local chunk cache (contract: STORE/chunk-cache/)
        self.cache_dirs = [self.store / "chunk-cache"] if self.chunks else []

    def start(self) -> None:
        self.server = Ninep(self.store, self.workdir)
        self.server.kind = self.name

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def collect(self) -> int:
        """gc with no grace period (the server is stopped); return the chunks freed.

        A store in a chunk pool leaves the chunks its commits drop to gc (an
        overwritten partial tail chunk, say), so the bucket holds exactly the
        referenced chunks only after one.
        """
        from cas import Store

        with Store.open(str(self.store)) as store:
            return store.gc(grace=0)

    def empty_cache(self) -> None:
        """Remove every cached chunk (the server is stopped)."""
        for d in self.cache_dirs:
            if d.exists():
                shutil.rmtree(d)
                d.mkdir(mode=0o700)

    def cache_bytes(self) -> int:
        return sum(f.stat().st_size for d in self.cache_dirs if d.exists()
                   for f in d.rglob("*") if f.is_file())


def start_s3(args, base: Path) -> SeaweedFS | None:
    """Point the AWS_* variables at ``--endpoint`` or at a SeaweedFS started here."""
    if args.endpoint:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            if not os.environ.get(name):
                raise BenchError(f"--endpoint needs {name} in the environment")
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint
        os.environ.setdefault("AWS_REGION", "us-east-1")
        if args.endpoint.startswith("http://"):
            os.environ["AWS_ALLOW_HTTP"] = "true"
        return None
    sw = SeaweedFS(base / "weed" / "data", base / "weed.log")
    try:
        sw.start()
    except Exception as exc:
        raise BenchError(f"SeaweedFS did not start: {exc}") from exc
    os.environ.update(sw.env())
    return sw


def run(args, base: Path, results: dict) -> None:
    pool = memoryview(os.urandom(96 * MiB))
    bucket = args.bucket or f"bench-{uuid.uuid4().hex[:12]}"
    backends = [Backend("local", base / "local" / "store", base / "local", None),
                Backend("s3", base / "s3" / "store", base / "s3", f"s3://{bucket}/store")]
    for b in backends:
        b.create(args.s3_chunk_size if b.chunks else None)
        results["backends"][b.name] = {"location": b.location, "chunk_size": b.chunk_size}
        log(f"{b.name}: {b.location}, chunk size {b.chunk_size}")
    s3_chunk = backends[1].chunk_size
    ceiling_sizes = sorted({s3_chunk, LOCAL_CHUNK}, reverse=True)
    results["ceiling_sizes"] = ceiling_sizes
    figures, ceiling = results["figures"], results["ceiling"]
    block = MiB - protocol.IOHDRSZ   # what one Twrite carries at msize 1 MiB
    try:
        for b in backends:
            b.start()
        for r in range(args.reps):
            tag = f"rep {r + 1}/{args.reps}"
            for size in ceiling_sizes:
                rt = s3ceiling.measure(bucket, size, args.ceiling_size, pool, salt=1000 + r)
                ceiling.setdefault(f"put_{size}", []).append(rt.put_MBps)
                ceiling.setdefault(f"get_{size}", []).append(rt.get_MBps)
                log(f"{tag} client ceiling {size // KiB} KiB x {rt.count}: "
                    f"PUT {rt.put_MBps:.1f} MB/s, GET {rt.get_MBps:.1f} MB/s")
            order = rotate(backends, r)
            content = ninepload.Content(pool, salt=r + 1, block=block)
            name = f"big-{r}"

            def note(measure: str, b: Backend, v: float) -> None:
                if not v > 0:
                    raise BenchError(f"{measure} on {b.name}: no figure ({v})")
                figures.setdefault(measure, {}).setdefault(b.name, []).append(v)
                unit = s3report.MEASURES[measure][0]
                log(f"{tag} {measure:9s} {b.name:5s} {v:10.1f} {unit}")

            for b in order:
                note("seq_write", b, ninepload.seq_write(b.server, name, args.size, content))
            for b in order:
                b.stop()
                b.empty_cache()
                why = drop_page_cache()
                if why:
                    results["drop_caches_failed"] = why
                b.start()
                note("cold_read", b, ninepload.seq_read(b.server, name, args.size, content))
            for b in order:
                note("warm_read", b, ninepload.seq_read(b.server, name, args.size, content))
                results["cache_bytes"].setdefault(b.name, []).append(b.cache_bytes())
            small = ninepload.Content(pool, salt=100 + r, block=args.file_size)
            for b in order:
                note("creates", b, ninepload.creates(b.server, f"small-{r}", args.files,
                                                     args.file_size, small))
    finally:
        for b in backends:
            b.stop()
    results["gc_freed"] = next(b for b in backends if b.chunks).collect()
    results["objects"] = count_objects(bucket, "store")
    results["objects_expected"] = args.reps * (-(-args.size // s3_chunk) + args.files)


def count_objects(bucket: str, prefix: str) -> dict[str, int]:
    """The S3 store's chunk objects (and bytes) in its bucket, and its other objects."""
    import obstore
    from obstore.store import S3Store

    chunks = size = other = 0
    for batch in obstore.list(S3Store(bucket, prefix=prefix)):
        for o in batch:
            if len(o["path"].rsplit("/", 1)[-1]) == 64:     # <2 hex>/<64 hex>
                chunks += 1
                size += o["size"]
            else:                                           # the layout marker
                other += 1
    return {"count": chunks, "bytes": size, "other": other}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.s3", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=GiB,
                    help="sequential file size (default 1G; e.g. 256M)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--files", type=int, default=1000, help="small files created per repetition")
    ap.add_argument("--file-size", type=parse_size, default=4 * KiB,
                    help="bytes per small file (default 4K)")
    ap.add_argument("--ceiling-size", type=parse_size, default=None,
                    help="bytes per client-ceiling measure (default: --size, at most 256M)")
    ap.add_argument("--s3-chunk-size", type=parse_size, default=None,
                    help="chunk size of the S3 store (default: the backend's default)")
    ap.add_argument("--endpoint", default=None,
                    help="use this running S3 server (credentials from AWS_* variables) "
                         "instead of starting SeaweedFS")
    ap.add_argument("--bucket", default=None, help="bucket name (default: a new random one)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="directory for the results")
    ap.add_argument("--name", default=None, help="results file stem (default: s3-<UTC time>)")
    ap.add_argument("--workdir", default=None, help="scratch directory (default: $TMPDIR)")
    args = ap.parse_args(argv)
    import logging

    import structlog
    # the stores opened in-process here say nothing useful below WARNING
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.reps < 1 or args.files < 1:
        ap.error("--reps and --files must be >= 1")
    if args.ceiling_size is None:
        args.ceiling_size = min(args.size, 256 * MiB)

    base = tempdir("ninep-bench-s3.", args.workdir)
    results: dict = {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(), "reps": args.reps, "size": args.size,
        "files": args.files, "file_size": args.file_size, "ceiling_size": args.ceiling_size,
        "threads": s3ceiling.THREADS, "backends": {}, "figures": {}, "ceiling": {},
        "cache_bytes": {}, "drop_caches_failed": None, "endpoint": args.endpoint,
        "s3_server": "given with --endpoint" if args.endpoint else "SeaweedFS `weed mini` started by the run",
    }
    t0 = time.perf_counter()
    sw = None
    try:
        sw = start_s3(args, base)
        if sw is not None:
            results["endpoint"] = sw.endpoint
        run(args, base, results)
        s3report.check_complete(results)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}\n(no results written; scratch data in {base})",
              file=sys.stderr)
        return 2
    except BaseException:
        traceback.print_exc()
        print(f"\nBENCHMARK FAILED (no results written; scratch data in {base})", file=sys.stderr)
        return 2
    finally:
        if sw is not None:
            sw.stop()
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_after"] = os.getloadavg()
    shutil.rmtree(base, ignore_errors=True)

    stem = args.name or "s3-" + _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    md = s3report.markdown(results)
    path = save(Path(args.out), stem, results, md)
    print(md)
    log(f"results: {path} ({results['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
