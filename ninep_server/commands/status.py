"""``ninep status``: what a running server is doing."""

from __future__ import annotations

import argparse

from .backend import backend
from .common import add_store_option, print_json
from .output import human


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="listeners, exports, sessions and commit figures of the running server",
        description="Ask the server running on --store (or at --admin) what it serves and how it is doing: "
        "listeners, exports, sessions, commits, and where the chunks live with the chunk backend's counters "
        "since the server started (local cache hit ratio, uploads, dedup skips, downloads, failed requests).",
    )
    add_store_option(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)


def _status(args) -> int:
    with backend(args, need_server=True) as be:
        st = be.status()
    if args.json:
        print_json(st)
        return 0
    print(f"ninep {st['version']} serving {st['store']} for {st['uptime_seconds']:.0f}s")
    print("listening: " + ", ".join(st["listening"]))
    print("admin:     " + ", ".join(st["admin"]))
    print("exports:")
    for e in st["exports"]:
        flags = ["ro" if e["read_only"] else "rw"] + ([f"squash={e['squash']}"] if e["squash"] != "none" else [])
        print(f"  {e['name']:<20} {' '.join(flags)}")
    print(f"sessions: {len(st['sessions'])}")
    for s in st["sessions"]:
        print(f"  #{s['id']:<4} {s['peer']:<24} msize={s['msize']} fids={s['fids']} in-flight={s['in_flight']}")
    c = st["commits"]
    mean = c["seconds"] / c["count"] * 1000 if c["count"] else 0.0
    print(f"commits: {c['count']} (mean {mean:.1f} ms, failures {c['failures']}, every {c['interval']}s)")
    k = st["chunks"]
    print(f"chunks: {k['location']}")
    if "memory_limit" in k:
        reads = k["memory_hits"] + k["memory_misses"]
        ratio = f"{k['memory_hit_ratio']:.2f}" if reads else "-"
        print(f"  memory cache {human(k['memory_bytes'])} of {human(k['memory_limit'])}, hit ratio {ratio} "
              f"({k['memory_hits']} hits, {k['memory_misses']} misses)")
    if k["location"].startswith("s3://"):
        reads = k["cache_hits"] + k["cache_misses"]
        ratio = f"{k['cache_hit_ratio']:.2f}" if reads else "-"
        print(f"  local cache {human(k['cache_bytes'])} of {human(k['cache_limit'])}, hit ratio {ratio} "
              f"({k['cache_hits']} hits, {k['cache_misses']} misses)")
        print(f"  uploads {k['uploads']} ({human(k['upload_bytes'])}), dedup skips {k['dedup_skips']}, "
              f"downloads {k['downloads']} ({human(k['download_bytes'])}), failed requests {k['errors']}")
    return 0
