"""Every admin command gives the same result with and without a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..servers import start_ninep


def ninep(store, *args, ok=True):
    proc = subprocess.run(
        [sys.executable, "-m", "ninep_server", *args, "--store", str(store)],
        capture_output=True,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def _normalized(out: bytes):
    """JSON output without the figures that differ from run to run (durations)."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("seconds", "bytes_per_second")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    return strip(json.loads(out))


READ_ONLY = [
    ("dataset", "list", "--json"),
    ("snapshot", "list", "--json"),
    ("snapshot", "diff", "main@one", "--json"),
    ("snapshot", "diff", "main@one", "main@two"),
    ("stats", "--json"),
    ("fsck", "--json"),
    ("scrub", "--json"),
    ("gc", "--dry-run", "--json"),
]


def _mutations(n: int):
    """Commands that change the store, with their expected output."""
    return [
        (("dataset", "create", f"extra{n}"), f"created dataset extra{n}\n"),
        (("dataset", "set", f"extra{n}", "quota=1M", "schedule=hourly:1h:2"),
         f"extra{n}: read_only=false quota=1048576 schedule=hourly:1h:2\n"),
        (("snapshot", "create", f"main@m{n}"), f"created main@m{n}\n"),
        (("snapshot", "clone", f"main@m{n}", f"clone{n}"), f"cloned main@m{n} into clone{n}\n"),
        (("dataset", "delete", f"clone{n}"), f"deleted dataset clone{n}\n"),
        (("snapshot", "delete", f"main@m{n}"), f"deleted main@m{n}\n"),
    ]


@pytest.fixture
def populated(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(50_000))
    (src / "g").write_text("g\n")
    store = tmp_path / "store"
    ninep(store, "import", str(src), "main")
    ninep(store, "snapshot", "create", "main@one")
    (src / "new").write_text("new\n")
    ninep(store, "import", str(src / "new").rsplit("/", 1)[0] + "/d", "main/copy")
    ninep(store, "snapshot", "create", "main@two")
    return store


def test_same_results_with_and_without_a_server(populated, tmp_path):
    offline = {args: ninep(populated, *args).stdout for args in READ_ONLY}
    server = start_ninep(populated)
    try:
        assert (populated / "admin.sock").exists()
        for args in READ_ONLY:
            online = ninep(populated, *args).stdout
            if "--json" in args:
                assert _normalized(online) == _normalized(offline[args]), args
            else:
                assert online == offline[args], args
        online_mut = [ninep(populated, *args).stdout.decode() for args, _ in _mutations(2)]
        status = json.loads(ninep(populated, "status", "--json").stdout)
        assert status["store"] == str(populated)
    finally:
        server.stop()
    offline_mut = [ninep(populated, *args).stdout.decode() for args, _ in _mutations(1)]
    assert offline_mut == [out for _, out in _mutations(1)]
    assert online_mut == [out for _, out in _mutations(2)]
    # errors read the same both ways too
    offline_err = ninep(populated, "snapshot", "delete", "main@missing", ok=False)
    server = start_ninep(populated)
    try:
        online_err = ninep(populated, "snapshot", "delete", "main@missing", ok=False)
    finally:
        server.stop()
    assert offline_err.returncode == online_err.returncode == 1
    assert b"No such file" in offline_err.stderr and b"main@missing" in online_err.stderr
    # status needs a server
    proc = ninep(populated, "status", ok=False)
    assert proc.returncode == 1 and b"no server is running" in proc.stderr


def _tree(root) -> dict:
    """Every path under ``root`` with its type, mode, size and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size if data is not None else None, data)
    return out


def _without_duration(out: bytes) -> str:
    """An import/export summary line without its duration ("in 0.02s")."""
    return out.decode().rsplit(" in ", 1)[0]


def test_transfers_and_rollback_agree_with_and_without_a_server(populated, tmp_path):
    """import, export (live tree and @snapshot) and rollback, run both ways, give the same output and trees."""
    src = tmp_path / "src2"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "h").write_bytes(os.urandom(70_000))
    (src / "top").write_text("top\n")
    results = {}
    for mode in ("offline", "online"):
        server = start_ninep(populated) if mode == "online" else None
        try:
            out = {
                "import": ninep(populated, "import", str(src), f"main/in-{mode}").stdout,
                "export-live": ninep(populated, "export", "main", str(tmp_path / f"live-{mode}")).stdout,
                "export-snap": ninep(populated, "export", "main@one", str(tmp_path / f"snap-{mode}")).stdout,
                "rollback": ninep(populated, "snapshot", "rollback", "main@two").stdout,
            }
            out["export-after"] = ninep(populated, "export", "main", str(tmp_path / f"after-{mode}")).stdout
        finally:
            if server:
                server.stop()
        results[mode] = {k: _without_duration(v) for k, v in out.items()}
        live = _tree(tmp_path / f"live-{mode}")
        assert live.pop(f"in-{mode}")[0] & 0o170000 == 0o040000
        assert {k.removeprefix(f"in-{mode}/"): v for k, v in live.items() if k.startswith(f"in-{mode}/")} == _tree(src)
        # rolled back to @two: the import is gone again, and the tree equals @two's
        assert not (tmp_path / f"after-{mode}" / f"in-{mode}").exists()
    assert results["offline"] == {k: v.replace("online", "offline") for k, v in results["online"].items()}
    assert _tree(tmp_path / "snap-offline") == _tree(tmp_path / "snap-online")
    assert _tree(tmp_path / "after-offline") == _tree(tmp_path / "after-online")
    assert results["online"]["export-live"].startswith("exported ")
