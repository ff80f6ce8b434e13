"""Markdown report and completeness check of ``python -m bench.s3``."""
from __future__ import annotations

import statistics

from .report import cell
from .servers import BenchError

# measure -> (unit, description)
MEASURES = {
    "seq_write": ("MB/s", "sequential write + fsync"),
    "cold_read": ("MB/s", "sequential read, cold (server restarted, chunk cache emptied, "
                          "page cache dropped)"),
    "warm_read": ("MB/s", "sequential read, warm (the same file again)"),
    "creates": ("files/s", "small-file creates + fsync"),
}
BACKENDS = ("local", "s3")
# store measure -> the client-ceiling figure it is bounded by (at the S3 chunk size)
CEILING_OF = {"seq_write": "put", "cold_read": "get"}


def _size(n: int) -> str:
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} B"


def _positive(vals) -> bool:
    return bool(vals) and all(v > 0 for v in vals)


def check_complete(results: dict) -> None:
    """Every measure has a positive figure per backend and repetition, or raise."""
    reps = results["reps"]
    for m in MEASURES:
        for b in BACKENDS:
            vals = results["figures"].get(m, {}).get(b)
            if not _positive(vals) or len(vals) != reps:
                raise BenchError(f"{m} {b}: no result ({vals})")
    for size in results["ceiling_sizes"]:
        for op in ("put", "get"):
            vals = results["ceiling"].get(f"{op}_{size}")
            if not _positive(vals) or len(vals) != reps:
                raise BenchError(f"client ceiling {op} {size}: no result ({vals})")


def ratios(num: list[float], den: list[float]) -> tuple[float, list[float]]:
    """median/median, and the per-repetition ratios."""
    return (statistics.median(num) / statistics.median(den),
            [a / b for a, b in zip(num, den)])


def _ratio_cell(num: list[float], den: list[float]) -> str:
    r, per = ratios(num, den)
    return f"**{r:.2f}** [{min(per):.2f}–{max(per):.2f}]"


def markdown(results: dict) -> str:
    """The report: machine, method, the client ceiling, then local and S3 side by side."""
    m = results["machine"]
    be = results["backends"]
    s3_chunk = be["s3"]["chunk_size"]
    fig = results["figures"]
    L = [f"# S3-backed store against local store: {results['started']}", ""]
    L.append(f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
             f"Python {m['python']}. Load average before "
             f"{', '.join(f'{x:.2f}' for x in m['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_after', []))} "
             "(a shared machine: other jobs ran too).")
    L.append("")
    L.append(f"S3 server: {results['s3_server']}, at {results['endpoint']}. "
             f"Stores: **local** ({be['local']['location']}, chunk size "
             f"{_size(be['local']['chunk_size'])}) and **s3** ({be['s3']['location']}, chunk "
             f"size {_size(s3_chunk)}), each served by its own `ninep serve` on loopback TCP.")
    L.append("")
    L.append(f"{results['reps']} interleaved repetitions (repetition *r* starts with another "
             f"backend; bench.servers.rotate). Cells: **median** (min–max). Ratios: "
             f"median/median, in brackets the range of per-repetition ratios. Higher is better "
             f"everywhere. Total {results.get('seconds', 0):.0f} s.")
    L.append("")
    why = results.get("drop_caches_failed")
    L.append("Page cache before each cold read: " + (
        f"**could not be dropped** ({why}); cold reads may be served partly from memory."
        if why else "dropped (`echo 3 > /proc/sys/vm/drop_caches`, after `sync`)."))
    L.append("")

    L.append("## Client ceiling (obstore, no ninep)")
    L.append("")
    L.append(f"obstore's synchronous API from {results['threads']} threads: PUT with "
             f"If-None-Match: * of distinct objects, then GET of each, "
             f"{_size(results['ceiling_size'])} per measure.")
    L.append("")
    L.append("| object size | PUT MB/s | GET MB/s | PUT objects/s | GET objects/s |")
    L.append("|---|---|---|---|---|")
    for size in results["ceiling_sizes"]:
        put, get = results["ceiling"][f"put_{size}"], results["ceiling"][f"get_{size}"]
        L.append(f"| {_size(size)} | {cell(put)} | {cell(get)} | "
                 f"{cell([v * 1e6 / size for v in put])} | {cell([v * 1e6 / size for v in get])} |")
    L.append("")

    L.append("## Store: local against S3")
    L.append("")
    L.append(f"Through `ninep serve` with the project's async client (ninep_server/client.py), "
             f"msize 1 MiB, 8 requests outstanding for sequential I/O. Sequential file "
             f"{_size(results['size'])}, a new file per repetition (no dedup between them), "
             f"read back and hash-checked. {results['files']:,} small files of "
             f"{_size(results['file_size'])} per repetition, created one after another "
             "(Tlcreate, Twrite, Tclunk), then one Tfsync. Writes are timed up to the Tfsync "
             "reply: for the S3 store, the chunks are in the bucket.")
    L.append("")
    L.append("| measure | unit | local | s3 | s3/local | s3/client ceiling |")
    L.append("|---|---|---|---|---|---|")
    for name, (unit, desc) in MEASURES.items():
        loc, s3 = fig[name]["local"], fig[name]["s3"]
        ceil = "–"
        if name in CEILING_OF:
            ref = results["ceiling"][f"{CEILING_OF[name]}_{s3_chunk}"]
            ceil = f"{_ratio_cell(s3, ref)} (of {CEILING_OF[name].upper()} at {_size(s3_chunk)})"
        L.append(f"| {desc} | {unit} | {cell(loc)} | {cell(s3)} | {_ratio_cell(s3, loc)} | "
                 f"{ceil} |")
    L.append("")
    cache = results["cache_bytes"].get("s3", [])
    obj = results.get("objects", {})
    if cache:
        L.append(f"S3 store's local chunk cache after the warm read: "
                 f"{', '.join(f'{c / (1 << 20):.0f} MiB' for c in cache)} per repetition.")
    if obj:
        L.append(f"Chunk objects in the S3 store's prefix at the end: {obj['count']:,} "
                 f"({obj['bytes'] / (1 << 20):.0f} MiB; plus {obj['other']} other, the layout "
                 f"marker); distinct chunks written: {results['objects_expected']:,}.")
    L.append("")
    return "\n".join(L)
