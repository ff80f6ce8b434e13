#!/usr/bin/env python3
"""Benchmark: a bystander's Tgetattr latency while another client takes 20,000 locks.

Starts ``ninep serve`` and connects two clients, each in its own process so
that neither's work delays the other's measures. The attacker opens a file and pipelines
20,000 Tlock read locks on disjoint, non-adjacent byte ranges, so none merge
and each one stays a separate lock; meanwhile the bystander sends Tgetattr
after Tgetattr on another file and records each round trip. Then the
attacker disconnects (its locks are released) while the bystander goes on.

Scenarios, each in its own server:

- ``default``: the default configuration; the attacker meets the
  per-connection lock cap (``max_locks_per_connection``) and gets ENOLCK;
- ``cap-20000``: the cap raised to 20,000, so all 20,000 locks are held and
  the data structure itself is what is measured; afterwards a third client's
  write lock over the whole file (a conflict search among 20,000 locks) and
  its getlock are timed too.

plus ``no attacker``: the bystander alone, the machine's noise floor. All of
them run ``--rounds`` times, interleaved, since shared machines are noisy.

Prints and writes ``bench/results/locks.json`` and ``locks.md``: the worst,
99th percentile and median bystander latency during the attack and during
the release, and the attacker's request rate. Target: worst under 50 ms (the
exit status checks the median over rounds of each scenario's worst).

    python bench/bench_locks.py [--locks 20000] [--rounds 3] [--server-path DIR] [--out bench/results]

``--server-path`` runs the server from another source tree (for example an
export of an older commit) to compare.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The server's process imports ninep from the tree under test (--server-path).
sys.path.insert(0, os.environ.get("BENCH_LOCKS_TREE", str(ROOT)))

import trio  # noqa: E402

from ninep_server import protocol as p  # noqa: E402
from ninep_server.client import NinepError, connect  # noqa: E402

O = p.OpenFlags
TARGET_MS = 50.0


def start_server(store: Path, config: str, server_path: Path) -> tuple[subprocess.Popen, str]:
    """This script in ``--serve`` mode: the ninep server plus a meter of its event loop."""
    cfg = store.parent / "ninep.toml"
    cfg.write_text(config)
    env = dict(os.environ, PYTHONPATH=str(server_path), BENCH_LOCKS_TREE=str(server_path))
    args = [sys.executable, __file__, "--serve", str(store), str(cfg)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env, cwd=store.parent)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited ({proc.wait()}) before listening")
        if line.startswith("listening "):
            return proc, line.split(None, 1)[1].strip()
    proc.kill()
    raise RuntimeError("the server did not report its listener")


def stop_server(proc: subprocess.Popen) -> dict:
    """Close the server's stdin (it shuts down) and read its event-loop figures."""
    try:
        out, _ = proc.communicate(input="", timeout=60)
        return json.loads(out.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        proc.kill()
        proc.wait()
        return {}


class LoopMeter:
    """trio instrument: the longest scheduler batches, in CPU time of the loop's thread and in wall time.

    A batch is everything the loop runs between two waits for I/O: no other
    client is served meanwhile. CPU time excludes the time the OS gave other
    processes (this machine is shared), so it is the server's own stall.
    """

    def __init__(self) -> None:
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self._cpu0 = self._wall0 = None

    def after_io_wait(self, timeout: float) -> None:
        self._cpu0, self._wall0 = time.thread_time(), time.perf_counter()

    def before_io_wait(self, timeout: float) -> None:
        if self._cpu0 is not None:
            self.cpu.append(time.thread_time() - self._cpu0)
            self.wall.append(time.perf_counter() - self._wall0)

    def summary(self) -> dict:
        cpu, wall = sorted(self.cpu), sorted(self.wall)
        if not cpu:
            return {}
        return {"batches": len(cpu), "max_cpu_ms": round(cpu[-1] * 1000, 3),
                "p999_cpu_ms": round(cpu[int(len(cpu) * 0.999)] * 1000, 3), "max_wall_ms": round(wall[-1] * 1000, 3)}


def serve(store_path: str, config_path: str) -> None:
    """``--serve``: run the server as ``ninep serve`` does, metering its loop, until stdin closes."""
    import gc
    import logging

    import structlog

    from cas import Store
    from ninep_server.address import parse_address
    from ninep_server.config import load_config
    from ninep_server.listen import open_listener
    from ninep_server.server import Server

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    config = load_config(config_path)
    store = Store.open(store_path, create=True, commit_interval=config.commit_interval)
    store.create_dataset("main")
    meter = LoopMeter()

    async def main():
        server = Server(store, config)
        listener, shown = await open_listener(parse_address("tcp:127.0.0.1:0"))
        gc.collect()
        gc.freeze()  # as ninep serve does (a no-op cost for older trees)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, [listener])
            trio.lowlevel.add_instrument(meter)
            print("listening", shown, flush=True)
            await trio.to_thread.run_sync(sys.stdin.read)
            trio.lowlevel.remove_instrument(meter)
            await server.shutdown()

    try:
        trio.run(main)
    finally:
        store.close()
    print(json.dumps(meter.summary()), flush=True)


def summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"count": 0}
    ms = sorted(x * 1000 for x in latencies)
    return {
        "count": len(ms),
        "max_ms": round(ms[-1], 3),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3),
        "median_ms": round(statistics.median(ms), 3),
    }


async def attack(address: str, n: int, result: dict, wide_check: bool) -> None:
    statuses: dict[str, int] = {}
    async with connect(address, uname=b"0", n_uname=0) as c:
        await c.write_file(b"locked", b"")
        f = await c.open(b"locked", O.RDWR)
        started = time.perf_counter()
        window = 2000
        for base in range(0, n, window):
            msgs = [
                p.Tlock(fid=f.fid, type=p.LockType.RDLCK, flags=0, start=2 * i, length=1, proc_id=1, client_id=b"attacker")
                for i in range(base, min(n, base + window))
            ]
            pendings = await c.start_many(msgs)
            for pending in pendings:
                try:
                    reply = await pending.result()
                    name = p.LockStatus(reply.status).name
                except NinepError as exc:
                    name = errno.errorcode.get(exc.errno, str(exc.errno))
                statuses[name] = statuses.get(name, 0) + 1
        elapsed = time.perf_counter() - started
        result["attacker"] = {"requests": n, "replies": statuses, "seconds": round(elapsed, 3),
                              "requests_per_s": round(n / elapsed)}
        if wide_check:
            async with connect(address, uname=b"0", n_uname=0) as other:
                g = await other.open(b"locked", O.RDWR)
                t0 = time.perf_counter()
                status = await other.lock(g.fid, p.LockType.WRLCK, 0, 0, proc_id=2, client_id=b"other")
                t1 = time.perf_counter()
                got = await other.getlock(g.fid, p.LockType.WRLCK, 1, 0, proc_id=2, client_id=b"other")
                t2 = time.perf_counter()
                result["whole_file_write_lock"] = {"status": p.LockStatus(status).name, "ms": round((t1 - t0) * 1000, 3)}
                result["getlock"] = {"conflict_start": got.start, "ms": round((t2 - t1) * 1000, 3)}
        print("disconnecting", flush=True)


async def attack_process(address: str, n: int, result: dict, wide_check: bool) -> None:
    """Run :func:`attack` in its own process, so that its work does not delay the bystander's loop."""
    args = [sys.executable, __file__, "--attack", address, "--locks", str(n)] + (["--wide"] if wide_check else [])
    proc = await trio.lowlevel.open_process(args, stdout=subprocess.PIPE)
    buffer = b""
    try:
        while chunk := await proc.stdout.receive_some(65536):
            buffer += chunk
            if b"disconnecting\n" in buffer and "released_at" not in result:
                result["released_at"] = time.perf_counter()
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.stdout.aclose()
    if proc.returncode:
        raise RuntimeError(f"the attacker process failed ({proc.returncode})")
    result.update(json.loads(buffer.decode().splitlines()[-1]))


async def quiet(address: str, result: dict) -> None:
    """No attacker: the bystander alone for a while (the machine's noise floor)."""
    await trio.sleep(3.0)
    result["attacker"] = {"requests": 0, "replies": {}, "seconds": 3.0, "requests_per_s": 0}
    result["released_at"] = time.perf_counter()


async def scenario(name: str, config: str, locks: int, server_path: Path, wide_check: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-locks-") as tmp:
        proc, address = start_server(Path(tmp) / "store", config, server_path)
        try:
            result: dict = {"scenario": name}
            during: list[float] = []
            after: list[float] = []
            async with connect(address, uname=b"0", n_uname=0) as bystander:
                await bystander.write_file(b"other", b"x")
                fid = await bystander.walk_path(b"other")
                done = trio.Event()

                async def run_attack():
                    try:
                        if locks:
                            await attack_process(address, locks, result, wide_check)
                        else:
                            await quiet(address, result)
                    finally:
                        done.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_attack)
                    await trio.sleep(0.05)
                    while not done.is_set():
                        t0 = time.perf_counter()
                        await bystander.rpc(p.Tgetattr(fid=fid, request_mask=p.GetattrMask.ALL))
                        t1 = time.perf_counter()
                        (after if "released_at" in result else during).append(t1 - t0)
                    # a little more, while the server drops the attacker's locks
                    until = time.perf_counter() + 1.0
                    while time.perf_counter() < until:
                        t0 = time.perf_counter()
                        await bystander.rpc(p.Tgetattr(fid=fid, request_mask=p.GetattrMask.ALL))
                        after.append(time.perf_counter() - t0)
            result.pop("released_at", None)
            result["bystander_during"] = summary(during)
            result["bystander_release"] = summary(after)
            worst = max(result["bystander_during"].get("max_ms", 0), result["bystander_release"].get("max_ms", 0))
            result["worst_ms"] = worst
        finally:
            result["server_loop"] = stop_server(proc)
        return result


def render(rounds: list[list[dict]], locks: int, server_path: Path) -> str:
    lines = [
        "# Lock flood: a bystander's Tgetattr latency",
        "",
        f"One client pipelines {locks:,} Tlock read locks on disjoint ranges of one file; another client",
        "sends Tgetattr in a loop on another file. `python bench/bench_locks.py`"
        + ("" if server_path == ROOT else f" (server from {server_path})")
        + f". Target: worst < {TARGET_MS:.0f} ms. {len(rounds)} rounds, scenarios interleaved;",
        "\"no attacker\" is the bystander alone: the machine's noise floor.",
        "",
        "| round | scenario | attacker replies | attacker req/s | bystander during: max / p99 / median ms (n) |"
        " during release: max / p99 ms | worst ms | server loop: longest batch, CPU / wall ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, results in enumerate(rounds, 1):
        for r in results:
            a, d, rel = r["attacker"], r["bystander_during"], r["bystander_release"]
            replies = ", ".join(f"{k} {v:,}" for k, v in sorted(a["replies"].items())) or "-"
            lines.append(
                f"| {n} | {r['scenario']} | {replies} | {a['requests_per_s']:,} | {d.get('max_ms')} / {d.get('p99_ms')} / "
                f"{d.get('median_ms')} ({d.get('count')}) | {rel.get('max_ms')} / {rel.get('p99_ms')} | {r['worst_ms']} | "
                f"{r['server_loop'].get('max_cpu_ms')} / {r['server_loop'].get('max_wall_ms')} |"
            )
    lines += [
        "",
        "The server loop columns: the longest run of the server's event loop without polling for I/O (while it runs,",
        "no other client is served), in CPU time of the loop's thread (the server's own stall) and in wall time",
        "(plus whatever the OS gave other processes: this machine is shared).",
        "",
        "| scenario | bystander worst per round (ms) | median | longest loop batch per round, CPU ms | target met (median worst) |",
        "|---|---|---|---|---|",
    ]
    for name, worsts in verdicts(rounds).items():
        med = statistics.median(worsts)
        cpu = [r["server_loop"].get("max_cpu_ms") for results in rounds for r in results if r["scenario"] == name]
        lines.append(f"| {name} | {', '.join(str(w) for w in worsts)} | {med} | {', '.join(str(c) for c in cpu)} | "
                     f"{'yes' if med < TARGET_MS else 'NO'} |")
    for results in rounds[-1:]:
        for r in results:
            if "whole_file_write_lock" in r:
                w, g = r["whole_file_write_lock"], r["getlock"]
                lines += ["", f"With {locks:,} locks held ({r['scenario']}, last round): a third client's whole-file "
                          f"write lock took {w['ms']} ms ({w['status']}), its getlock {g['ms']} ms."]
    return "\n".join(lines) + "\n"


def verdicts(rounds: list[list[dict]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for results in rounds:
        for r in results:
            out.setdefault(r["scenario"], []).append(r["worst_ms"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--locks", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server-path", type=Path, default=ROOT, help="source tree to run ninep serve from")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--name", default="locks", help="file stem of the results")
    ap.add_argument("--attack", metavar="ADDRESS", help=argparse.SUPPRESS)  # the attacker's own process
    ap.add_argument("--wide", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve", nargs=2, metavar=("STORE", "CONFIG"), help=argparse.SUPPRESS)  # the server's process
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    if args.attack:
        result: dict = {}
        trio.run(attack, args.attack, args.locks, result, args.wide)
        print(json.dumps(result), flush=True)
        return 0
    scenarios = [
        ("no attacker", "[server]\n", False),
        ("default", "[server]\n", False),
        (f"cap-{args.locks}", f"[server]\nmax_locks_per_connection = {args.locks}\n", True),
    ]
    if args.server_path != ROOT:  # an older tree may not know the key
        scenarios = scenarios[:1] + [("default", "[server]\n", True)]
    rounds = []
    for _ in range(args.rounds):
        rounds.append([
            trio.run(scenario, name, cfg, 0 if name == "no attacker" else args.locks, args.server_path, wide)
            for name, cfg, wide in scenarios
        ])
    report = render(rounds, args.locks, args.server_path)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps({"rounds": rounds, "target_ms": TARGET_MS}, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text(report)
    attacked = {k: v for k, v in verdicts(rounds).items() if k != "no attacker"}
    return 0 if all(statistics.median(v) < TARGET_MS for v in attacked.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
