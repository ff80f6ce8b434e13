"""`ninep snapshot ...` end to end: the real CLI in a subprocess against a store
made here with the cas API (no server running, so the CLI opens the store)."""

import json
import os
import subprocess
import sys

import pytest

from cas import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ninep(store, *args, ok=True):
    proc = subprocess.run([sys.executable, "-m", "ninep_server", "snapshot", *args, "--store", store],
                          capture_output=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})
    if ok:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def store_dir(tmp_path):
    path = str(tmp_path / "store")
    with Store.open(path, create=True) as s:
        s.create_dataset("main")
        v = s.volume("main")
        for name, data in [(b"a", b"one"), (b"b", b"two"), (b"\xff", b"binary name")]:
            f = v.create(v.root, name, 0o644, 0, 0)
            v.write(f.ino, 0, data)
    return path


def read(path, dataset, name):
    with Store.open(path) as s:
        v = s.volume(dataset)
        a = v.resolve(name)
        return v.read(a.ino, 0, a.size)


def test_snapshot_cli_end_to_end(store_dir):
    assert ninep(store_dir, "list").stdout.decode().strip() == "no snapshots"
    assert ninep(store_dir, "create", "main@before").stdout.decode().strip() == "created main@before"
    with Store.open(store_dir) as s:  # change the live tree with the cas API
        v = s.volume("main")
        v.write(v.resolve(b"a").ino, 0, b"ONE")
        v.rename(v.root, b"b", v.root, b"c")
        v.unlink(v.root, b"\xff")
        f = v.create(v.root, b"new", 0o644, 0, 0)
        v.write(f.ino, 0, b"n")
    ninep(store_dir, "create", "main@after")

    out = ninep(store_dir, "list").stdout.decode().splitlines()
    assert out[0].split() == ["SNAPSHOT", "CREATED"]
    assert [line.split()[0] for line in out[1:]] == ["main@before", "main@after"]
    listed = json.loads(ninep(store_dir, "list", "main", "--json").stdout)
    assert [(s["dataset"], s["name"]) for s in listed] == [("main", "before"), ("main", "after")]
    assert listed[0]["id"] < listed[1]["id"] and listed[0]["gen"] < listed[1]["gen"]

    expected = b"M /\nM /a\nR /b -> /c\n+ /new\n- /\xff\n"
    assert ninep(store_dir, "diff", "main@before").stdout == expected          # against live
    assert ninep(store_dir, "diff", "main@before", "main@after").stdout == expected
    assert ninep(store_dir, "diff", "main@after").stdout == b""
    js = json.loads(ninep(store_dir, "diff", "main@before", "--json").stdout)
    assert {"kind": "R", "path": "/c", "old_path": "/b"} in js
    gone = [c for c in js if c["kind"] == "-"]  # non-UTF-8 bytes travel as surrogate escapes
    assert [os.fsencode(c["path"]) for c in gone] == [b"/\xff"]

    assert ninep(store_dir, "clone", "main@before", "copy").stdout.decode().strip() == \
        "cloned main@before into copy"
    assert read(store_dir, "copy", b"a") == b"one" and read(store_dir, "copy", b"\xff") == b"binary name"

    ninep(store_dir, "rollback", "main@before")
    assert read(store_dir, "main", b"a") == b"one" and read(store_dir, "main", b"b") == b"two"
    assert [s["name"] for s in json.loads(ninep(store_dir, "list", "--json").stdout)] == ["before", "after"]

    assert ninep(store_dir, "delete", "main@after").stdout.decode().strip() == "deleted main@after"
    assert [s["name"] for s in json.loads(ninep(store_dir, "list", "--json").stdout)] == ["before"]
    with Store.open(store_dir) as s:
        assert s.check() == []


@pytest.mark.parametrize("args, message", [
    (("create", "main@bad/name"), "bad snapshot name 'bad/name'"),
    (("create", "nope@x"), "no dataset 'nope'"),
    (("delete", "main@missing"), "no snapshot main@missing"),
    (("rollback", "main@missing"), "no snapshot main@missing"),
    (("diff", "main@missing"), "no snapshot main@missing"),
    (("clone", "main@missing", "copy"), "no snapshot main@missing"),
    (("create", "main"), "expected DATASET@SNAPSHOT"),
])
def test_snapshot_cli_errors(store_dir, args, message):
    proc = ninep(store_dir, *args, ok=False)
    assert proc.returncode != 0
    assert message in proc.stderr.decode(), proc.stderr


def test_snapshot_cli_duplicate_and_clone_errors(store_dir):
    ninep(store_dir, "create", "main@s")
    dup = ninep(store_dir, "create", "main@s", ok=False)
    assert dup.returncode != 0 and "snapshot main@s exists" in dup.stderr.decode()
    clash = ninep(store_dir, "clone", "main@s", "main", ok=False)
    assert clash.returncode != 0 and "dataset 'main' exists" in clash.stderr.decode()
