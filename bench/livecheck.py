"""What the live robustness scripts (fuzz_live.py, soak.py) share: the server's
peak memory, its log's error lines, fsck of the stopped store, and the result files."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a running process in MiB (its peak resident set), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def log_findings(log_path: Path, top: int = 10) -> dict:
    """Error and warning lines of the server's JSON log, counted by event."""
    counts: Counter = Counter()
    samples: dict[str, str] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                counts["(traceback outside the JSON log)"] += 1
            continue
        level = rec.get("level")
        if level not in ("error", "critical", "warning"):
            continue
        key = f"{level}: {rec.get('event')}"
        counts[key] += 1
        if key not in samples:
            detail = {k: v for k, v in rec.items() if k not in ("event", "level", "timestamp", "traceback")}
            samples[key] = json.dumps(detail, default=str)[:300]
    return {
        "errors": sum(n for k, n in counts.items() if not k.startswith("warning")),
        "warnings": sum(n for k, n in counts.items() if k.startswith("warning")),
        "by_event": [{"event": k, "count": n, "sample": samples.get(k, "")} for k, n in counts.most_common(top)],
    }


def create_dataset(store: Path, name: str) -> None:
    """Create dataset ``name`` through the running server's admin socket (`ninep dataset create`)."""
    subprocess.run([sys.executable, "-m", "ninep_server", "--log-level", "warning", "dataset", "create", name,
                    "--store", str(store)], check=True, capture_output=True, cwd=str(ROOT), timeout=120)


def fsck(store: Path) -> dict:
    """``ninep fsck --json`` on a stopped store: {"clean": bool, "exit": int, "damage": [...]}."""
    proc = subprocess.run(
        [sys.executable, "-m", "ninep_server", "--log-level", "warning", "fsck", "--json", "--store", str(store)],
        capture_output=True, text=True, cwd=str(ROOT), timeout=3600)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        return {"clean": False, "exit": proc.returncode, "damage": [proc.stderr[-2000:]]}
    damage = [f"{f['kind']}: {f['message']}" for f in result.get("findings", []) if not f.get("fixed")]
    return {"clean": bool(result.get("clean")) and proc.returncode == 0, "exit": proc.returncode,
            "damage": damage[:20], "warnings": result.get("warnings", [])[:20],
            "inodes": result.get("inodes"), "chunks": result.get("chunks")}


def add_common_options(ap: argparse.ArgumentParser, name: str) -> None:
    """The options both scripts take: --seed, --workdir, --out, --name and --note."""
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: random, reported)")
    ap.add_argument("--workdir", help="keep the store here (default: a temporary directory, removed on success)")
    ap.add_argument("--out", default=str(RESULTS), help="directory for NAME.md and NAME.json")
    ap.add_argument("--name", default=name)
    ap.add_argument("--note", default="", help="a line for the report (what was run, where)")


def seed_of(args: argparse.Namespace) -> int:
    """The seed asked for, or a random one (reported with the results)."""
    return args.seed if args.seed is not None else random.randrange(1 << 30)


def write_results(out: Path, name: str, title: str, intro: str, rows: list[tuple[str, object]],
                  data: dict, sections: list[tuple[str, list[str]]] = ()) -> tuple[Path, Path]:
    """``out/name.json`` (``data``) and ``out/name.md``: ``intro`` (plus ``data["note"]``), a table
    of ``rows``, ``sections``, and the server log's most frequent errors and warnings."""
    if data.get("note"):
        intro += f"\n\n{data['note']}"
    log = [f"- {e['count']} x `{e['event']}` e.g. `{e['sample']}`" for e in data["server_log"]["by_event"]]
    sections = [*sections, ("Server log (most frequent errors and warnings)", log)]
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"{name}.json", out / f"{name}.md"
    jpath.write_text(json.dumps(data, indent=2, default=str) + "\n")
    lines = [f"# {title}", "", intro, "", "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    for heading, body in sections:
        lines += ["", f"## {heading}", ""] + (body or ["(none)"])
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath
