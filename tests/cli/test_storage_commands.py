"""The storage admin commands end to end: dataset, import, export, stats, gc, fsck, scrub."""

import io
import json
import os
import sys

import pytest
import trio

from cas import Store
from ninep_server.cli import main
from ninep_server.config import ServerConfig, parse_config


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / "store")


# main() configures structlog to cache loggers bound to sys.stderr; give it a stream
# that outlives each test's captured stderr
ERR = io.StringIO()


def cli(*argv) -> int:
    saved, sys.stderr = sys.stderr, ERR
    try:
        return main(list(argv))
    finally:
        sys.stderr = saved


def run(capsys, *argv):
    code = cli(*argv)
    out = capsys.readouterr().out
    return code, out


def _tree(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(os.urandom(200_000))
    (src / "g").write_bytes(b"hello")
    os.symlink("d/f", src / "l")
    return src


def test_dataset_create_list_delete(capsys, store_dir):
    assert run(capsys, "dataset", "create", "alpha", "--store", store_dir)[0] == 0
    assert run(capsys, "dataset", "create", "beta", "--store", store_dir)[0] == 0
    code, out = run(capsys, "dataset", "list", "--json", "--store", store_dir)
    assert code == 0 and [d["name"] for d in json.loads(out)] == ["alpha", "beta"]
    ERR.seek(0)
    ERR.truncate()
    assert cli("dataset", "create", "alpha", "--store", store_dir) == 1
    assert "exists" in ERR.getvalue()
    assert run(capsys, "dataset", "delete", "alpha", "--store", store_dir)[0] == 0
    code, out = run(capsys, "dataset", "list", "--store", store_dir)
    assert "beta" in out and "alpha" not in out
    assert cli("dataset", "delete", "nope", "--store", store_dir) == 1


def test_import_export_stats(capsys, tmp_path, store_dir):
    src = _tree(tmp_path)
    code, out = run(capsys, "import", str(src), "one", "--store", store_dir)
    assert code == 0 and "imported 2 files" in out and "1 symlinks" in out
    assert run(capsys, "import", str(src), "two/sub/dir", "--store", store_dir)[0] == 0
    code, out = run(capsys, "stats", "--json", "--store", store_dir)
    st = json.loads(out)
    assert st["dedup_ratio"] == 2.0 and st["files"] == 4
    assert {d["name"]: d["directories"] for d in st["datasets"]} == {"one": 2, "two": 4}
    code, out = run(capsys, "stats", "--store", store_dir)
    assert "dedup ratio 2.00" in out
    dest = tmp_path / "out"
    code, out = run(capsys, "export", "two/sub/dir", str(dest), "--store", store_dir)
    assert code == 0 and "exported 2 files" in out
    assert (dest / "d" / "f").read_bytes() == (src / "d" / "f").read_bytes()
    assert os.readlink(dest / "l") == "d/f"
    assert cli("export", "two/missing", str(tmp_path / "x"), "--store", store_dir) == 1


def test_gc_fsck_scrub_exit_codes(capsys, tmp_path, store_dir):
    src = _tree(tmp_path)
    run(capsys, "import", str(src), "main", "--store", store_dir)
    with Store.open(store_dir) as s:
        orphan = s.chunks.put(os.urandom(3000))
        victim = s.catalog.query("SELECT hash FROM extents WHERE length = 5")[0][0]
    code, out = run(capsys, "gc", "--dry-run", "--store", store_dir)
    assert code == 0 and "would free 1 chunks" in out
    code, out = run(capsys, "fsck", "--store", store_dir)
    assert code == 0 and "orphan chunks: 1" in out and "clean" in out
    code, out = run(capsys, "gc", "--json", "--store", store_dir)
    assert json.loads(out)["chunks_freed"] == 1 and json.loads(out)["sample"] == [orphan]
    code, out = run(capsys, "scrub", "--store", store_dir)
    assert code == 0 and "no damage" in out
    path = os.path.join(store_dir, "chunks", victim[:2], victim)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(b"jello")
    code, out = run(capsys, "scrub", "--store", store_dir)
    assert code == 1 and f"DAMAGED chunk {victim}" in out and "used by main:/g" in out
    os.unlink(path)
    code, out = run(capsys, "fsck", "--store", store_dir)
    assert code == 1 and f"missing-chunk: chunk {victim} missing" in out and "main:/g" in out
    assert "NOT FIXABLE" in out
    code, out = run(capsys, "fsck", "--json", "--store", store_dir)
    assert code == 1 and json.loads(out)["clean"] is False


def test_fsck_repair_nlink(capsys, tmp_path, store_dir):
    src = _tree(tmp_path)
    run(capsys, "import", str(src), "main", "--store", store_dir)
    with Store.open(store_dir) as s:
        s.catalog.db.execute("UPDATE inodes SET nlink = 3 WHERE size = 5 AND died IS NULL")
    code, out = run(capsys, "fsck", "--store", store_dir)
    assert code == 1 and "nlink 3, expected 1 [fixable with --repair]" in out
    code, out = run(capsys, "fsck", "--repair", "--store", store_dir)
    assert code == 0 and "[FIXED]" in out
    code, out = run(capsys, "fsck", "--store", store_dir)
    assert code == 0 and out.strip().endswith("clean")


def test_gc_interval_config():
    assert ServerConfig().gc_interval == 3600
    assert parse_config({"server": {"gc_interval": 0}}).gc_interval == 0
    assert parse_config({"server": {"gc_interval": 2.5}}).gc_interval == 2.5


async def test_server_background_gc(tmp_path):
    from ninep_server.server import Server

    with Store.open(str(tmp_path / "s"), create=True) as store:
        store.create_dataset("main")
        h = store.chunks.put(os.urandom(1000))
        server = Server(store, ServerConfig(gc_interval=0.05))
        with trio.move_on_after(5):
            while store.chunks.has(h):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(server._gc_loop)
                    await trio.sleep(0.3)
                    nursery.cancel_scope.cancel()
        assert not store.chunks.has(h)
