"""The layering contracts of pyproject.toml's [tool.importlinter], checked by import-linter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports() -> str:
    exe = Path(sys.executable).parent / "lint-imports"
    found = str(exe) if exe.exists() else shutil.which("lint-imports")
    assert found, "lint-imports not installed (it is in the test extra: import-linter)"
    return found


def test_import_contracts_are_kept():
    """cas never imports ninep_server, the codec imports nothing else of the project,
    and no two modules of cas, nor of ninep_server (at any depth: admin, commands,
    protocol), import each other (TYPE_CHECKING and function-level imports included)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([_lint_imports(), "--no-cache"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "BROKEN" not in r.stdout and " KEPT" in r.stdout


def test_no_cycle_contracts_cover_both_packages():
    """An acyclic_siblings contract covers cas and one covers ninep_server, and
    neither excludes imports under TYPE_CHECKING."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert config["exclude_type_checking_imports"] is False
    acyclic = [c for c in config["contracts"] if c["type"] == "acyclic_siblings"]
    covered = {a for c in acyclic for a in c["ancestors"]}
    assert {"cas", "ninep_server"} <= covered
    assert not any(c.get("skip_descendants") or c.get("ignore_imports") for c in acyclic)


def test_codec_contract_names_every_other_module():
    """The codec's forbidden list covers every module of ninep_server but the codec,
    so a new module cannot slip past the contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"]
                   if c.get("source_modules") == ["ninep_server.protocol"]]
    package = ROOT / "ninep_server"
    modules = {f"ninep_server.{p.stem}" for p in package.glob("*.py")
               if p.stem not in ("__init__", "__main__")}
    modules |= {f"ninep_server.{p.name}" for p in package.iterdir()
                if (p / "__init__.py").exists() and p.name != "protocol"}
    assert modules <= set(contract["forbidden_modules"])
