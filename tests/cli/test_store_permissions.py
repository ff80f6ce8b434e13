"""A store with loosened modes warns when opened; `ninep fsck --repair` makes it owner-only."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cas import Store, perms

ROOT = Path(__file__).resolve().parents[2]


def ninep(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ninep_server", "--log-format", "json", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def _warnings(stderr: str) -> list[dict]:
    lines = [json.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]
    return [ln for ln in lines if ln.get("level") == "warning"]


def test_loose_modes_warn_on_open_and_fsck_repair_fixes_them(tmp_path):
    store = str(tmp_path / "s")
    with Store.open(store, create=True) as s:
        s.create_dataset("main")
        vol = s.volume("main")
        f = vol.create(vol.root, b"f", 0o600, 0, 0)
        vol.write(f.ino, 0, b"secret" * 1000)
        s.commit()
        chunk = s.chunks.path(next(iter(s.chunks)))
    assert perms.audit(store, deep=True) == []
    loosened = [(store, 0o755), (os.path.join(store, "catalog.duckdb"), 0o644),
                (os.path.join(store, "FORMAT"), 0o644), (os.path.dirname(chunk), 0o755),
                (chunk, 0o444)]
    for path, mode in loosened:
        os.chmod(path, mode)

    r = ninep("fsck", "--store", store)
    assert r.returncode == 0 and r.stdout.strip().endswith("clean"), r  # warnings, not damage
    (opened,) = [w for w in _warnings(r.stderr) if "fsck --repair" in w["event"]]
    named = " ".join(opened["paths"])
    for path in (store, os.path.join(store, "FORMAT"), os.path.dirname(chunk)):
        assert path in named, (path, named)  # the open-time check: top level, chunk directories
    # DuckDB's files are put right by the catalog itself (DuckDB creates them with the umask)
    assert os.stat(os.path.join(store, "catalog.duckdb")).st_mode & 0o777 == 0o600
    for path, _ in loosened[:1] + loosened[2:]:  # fsck looks at every chunk file too
        assert f"warning: {path}: mode" in r.stdout, (path, r.stdout)

    r = ninep("fsck", "--repair", "--store", store)
    assert r.returncode == 0 and "made owner-only" in r.stdout, r
    assert perms.audit(store, deep=True) == []
    assert os.stat(store).st_mode & 0o777 == 0o700
    assert os.stat(chunk).st_mode & 0o777 == 0o400

    r = ninep("fsck", "--store", store)
    assert r.returncode == 0 and "warning" not in r.stdout, r
    assert not [w for w in _warnings(r.stderr) if "fsck --repair" in w["event"]], r.stderr
