"""Catalog copies in the bucket, for disaster recovery: :func:`ship` and :func:`restore`.

A store whose chunks live in ``s3://BUCKET/PREFIX`` ships consistent copies
of its DuckDB catalog next to them (docs/format.md, "Catalog copies")::

    PREFIX/catalogs/<store id>/<UTC time>-<generation>/schema.sql, load.sql, <table>.parquet
    PREFIX/catalogs/<store id>/<UTC time>-<generation>/manifest.json   written last

A copy is ``EXPORT DATABASE ... (FORMAT parquet)`` run in one read
transaction on a private cursor, so commits go on while it runs and it shows
one committed state. Its manifest names every file with its size and
BLAKE3-256 and is uploaded after all of them: a copy without a manifest (an
interrupted ship) does not exist. :func:`restore` rebuilds a store
directory from the newest complete copy, verifying every file first.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

import blake3
import duckdb
import obstore
from obstore.store import S3Store

from . import perms
from .errors import FsError, StoreFormatError
from .s3chunks import parse_url
from .s3config import S3Settings

#: version of the catalog-copy layout and manifest
COPY_FORMAT = 1
MANIFEST = "manifest.json"
CATALOGS = "catalogs"
#: copies kept by default
KEEP = 24
_COPY_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-\d+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_TMP_PREFIX = "catalog-copy-"
#: the FORMAT file of a restored store: cas/store.py's FORMAT_NAME and STORE_FORMAT_REMOTE
#: (not imported: store -> gc -> here would be an import cycle; a test keeps them equal)
FORMAT_LINE = "ninep-store 2\n"


class CatalogCopyError(FsError):
    """A catalog copy is missing, incomplete or damaged (errno EIO or ENOENT)."""


@dataclass(frozen=True)
class CopyInfo:
    """One complete catalog copy: where it is and what its manifest says."""

    url: str            # s3://BUCKET/PREFIX/catalogs/<id>/<name>
    name: str           # <UTC time>-<generation>
    store_id: str
    generation: int
    files: int
    bytes: int


def store_id(store) -> str:
    """The store's id: the one it is registered under in its chunk pool (cas/pool.py)."""
    if store.pool is None:
        raise FsError(errno.EINVAL, f"{store.path}: its chunks are local; only a store on "
                      f"object storage has a store id and catalog copies")
    return store.pool.store_id


def _bucket(url: str, settings: S3Settings | None) -> tuple[S3Store, str, str]:
    """(whole-bucket client, bucket, prefix) for ``s3://BUCKET/PREFIX``."""
    bucket, prefix = parse_url(url)
    return S3Store(bucket, **(settings or S3Settings.resolve()).obstore_options()), bucket, prefix


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p)


def _hash_file(path: str) -> tuple[int, str]:
    h = blake3.blake3()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _copies(client: S3Store, base: str) -> dict[str, set[str]]:
    """copy name -> file names, of everything under ``base`` (``PREFIX/catalogs/<id>``)."""
    out: dict[str, set[str]] = {}
    for batch in obstore.list(client, base + "/"):
        for meta in batch:
            rest = meta["path"][len(base) + 1:]
            name, _, file = rest.partition("/")
            if _COPY_NAME.match(name) and file:
                out.setdefault(name, set()).add(file)
    return out


def ship(store, settings: S3Settings | None = None, keep: int = KEEP) -> CopyInfo:
    """Ship a consistent copy of ``store``'s catalog to its bucket; prune beyond ``keep``.

    Blocking (run it in a worker thread). Raises FsError(EINVAL) for a store
    with local chunks, FsError(EIO) when the bucket fails.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    if store.replica:
        raise FsError(errno.EROFS, f"{store.path}: the working copy of a read-only replica is "
                      f"never shipped; only the store it replicates ships copies")
    location = store.chunks.location
    if not location.startswith("s3://"):
        raise FsError(errno.EINVAL, f"{store.path}: its chunks are local; catalog copies go to "
                      f"the bucket of a store whose chunks are on object storage")
    with store.copy_lock:
        return _ship(store, location, settings or store.chunks.settings, keep)


def _ship(store, location: str, settings: S3Settings, keep: int) -> CopyInfo:
    catalog = store.catalog
    sid = store_id(store)
    client, bucket, prefix = _bucket(location, settings)
    base = _join(prefix, CATALOGS, sid)
    for stale in os.listdir(store.path):
        if stale.startswith(_TMP_PREFIX):  # left by a ship that crashed
            shutil.rmtree(os.path.join(store.path, stale), ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=store.path)
    try:
        export = os.path.join(tmp, "export")
        with catalog.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                gen = int(cur.execute(
                    "SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
                version = int(cur.execute(
                    "SELECT value FROM meta WHERE key = 'format_version'").fetchone()[0])
                cur.execute(f"EXPORT DATABASE {_sql_path(export)} (FORMAT parquet)")
            finally:
                cur.execute("COMMIT")
        now = datetime.datetime.now(datetime.timezone.utc)
        name = f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{gen}"
        files = []
        for fname in sorted(os.listdir(export)):
            path = os.path.join(export, fname)
            size, digest = _hash_file(path)
            files.append({"name": fname, "size": size, "blake3": digest})
            try:
                with open(path, "rb") as f:
                    obstore.put(client, _join(base, name, fname), f)
            except Exception as exc:
                raise FsError(errno.EIO, f"shipping the catalog copy to s3://{bucket}/{base}: "
                              f"{type(exc).__name__}") from None
        manifest = {"format": "ninep-catalog-copy", "version": COPY_FORMAT,
                    "store_id": sid, "generation": gen, "catalog_format_version": version,
                    "chunks": location, "chunk_size": store.chunk_size,
                    "created": now.isoformat(), "files": files}
        try:
            obstore.put(client, _join(base, name, MANIFEST),
                        json.dumps(manifest, indent=1).encode())
        except Exception as exc:
            raise FsError(errno.EIO, f"shipping the catalog copy manifest to s3://{bucket}/{base}: "
                          f"{type(exc).__name__}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(client, base, keep)
    return CopyInfo(url=f"s3://{bucket}/{_join(base, name)}", name=name, store_id=sid,
                    generation=gen, files=len(files), bytes=sum(f["size"] for f in files))


def _prune(client: S3Store, base: str, keep: int) -> None:
    """Delete complete copies beyond the ``keep`` newest, and incomplete ones older than the newest
    complete one. A copy loses its manifest first, so an interrupted prune leaves no half copy."""
    copies = _copies(client, base)
    complete = sorted(n for n, fs in copies.items() if MANIFEST in fs)
    if not complete:
        return
    doomed = complete[:-keep] if len(complete) > keep else []
    doomed += [n for n, fs in copies.items() if MANIFEST not in fs and n < complete[-1]]
    for name in doomed:
        keys = [_join(base, name, f) for f in sorted(copies[name], key=lambda f: f != MANIFEST)]
        obstore.delete(client, keys[:1])
        if keys[1:]:
            obstore.delete(client, keys[1:])


def copies(url: str, settings: S3Settings | None = None) -> list[str]:
    """Names of the complete copies under ``s3://BUCKET/PREFIX/catalogs/<id>``, oldest first."""
    client, _, base = _bucket(url, settings)
    return sorted(n for n, fs in _copies(client, base).items() if MANIFEST in fs)


def resolve_url(url: str, store: str | None = None, settings: S3Settings | None = None) -> str:
    """``s3://BUCKET/PREFIX/catalogs/<id>`` from itself, or from ``s3://BUCKET/PREFIX`` and a
    store id (``store``), or the only store under that prefix."""
    bucket, prefix = parse_url(url)
    parts = prefix.split("/") if prefix else []
    if len(parts) >= 2 and parts[-2] == CATALOGS:
        return f"s3://{bucket}/{prefix}"
    if store is None:
        client, _, _ = _bucket(url, settings)
        base = _join(prefix, CATALOGS)
        ids = sorted({m["path"][len(base) + 1:].split("/", 1)[0]
                      for batch in obstore.list(client, base + "/") for m in batch})
        if len(ids) != 1:
            raise CatalogCopyError(errno.ENOENT, (
                f"s3://{bucket}/{base}: no catalog copies" if not ids else
                f"s3://{bucket}/{base} holds the copies of several stores ({', '.join(ids)}): "
                f"name one, e.g. s3://{bucket}/{base}/{ids[0]}"))
        store = ids[0]
    return f"s3://{bucket}/{_join(prefix, CATALOGS, store)}"


def restore(url: str, dest: str, settings: S3Settings | None = None,
            copy: str | None = None) -> CopyInfo:
    """Rebuild a store directory ``dest`` from the newest complete copy under ``url``
    (``s3://BUCKET/PREFIX/catalogs/<id>``), or from copy ``copy``.

    ``dest`` must be missing or empty. Every file is checked against the
    manifest before anything is written; a mismatch raises CatalogCopyError
    naming the file. The restored store records the same chunk location.
    """
    client, bucket, base = _bucket(url, settings)
    found = _copies(client, base)
    complete = sorted(n for n, fs in found.items() if MANIFEST in fs)
    if copy is None:
        if not complete:
            raise CatalogCopyError(errno.ENOENT, f"{url}: no complete catalog copy (none has a "
                                   f"{MANIFEST})")
        copy = complete[-1]
    elif copy not in complete:
        raise CatalogCopyError(errno.ENOENT, f"{url}: no complete catalog copy named {copy!r}")
    where = f"s3://{bucket}/{_join(base, copy)}"
    try:
        manifest = json.loads(bytes(obstore.get(client, _join(base, copy, MANIFEST)).bytes()))
    except ValueError:
        raise CatalogCopyError(errno.EIO, f"{where}/{MANIFEST} is not valid JSON") from None
    if manifest.get("format") != "ninep-catalog-copy" or manifest.get("version") != COPY_FORMAT:
        raise StoreFormatError(f"{where}: catalog copy format {manifest.get('format')!r} version "
                               f"{manifest.get('version')!r}, this code reads version {COPY_FORMAT}")
    if os.path.exists(dest) and os.listdir(dest):
        raise FsError(errno.EEXIST, f"{dest}: exists and is not empty; restore into a new directory")
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, perms.DIR_MODE)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=dest)
    try:
        export = os.path.join(tmp, "export")
        os.mkdir(export)
        for entry in manifest["files"]:
            fname = entry["name"]
            if not _FILE_NAME.match(fname) or fname == MANIFEST:
                raise CatalogCopyError(errno.EIO, f"{where}/{MANIFEST}: bad file name {fname!r}")
            size, digest = _download(client, _join(base, copy, fname), os.path.join(export, fname),
                                     f"{where}/{fname}")
            if size != entry["size"] or digest != entry["blake3"]:
                raise CatalogCopyError(errno.EIO, (
                    f"{where}/{fname} is damaged: {size} bytes with BLAKE3 {digest}, the "
                    f"manifest says {entry['size']} bytes with BLAKE3 {entry['blake3']}; "
                    f"restore an older copy with --copy (complete copies: {', '.join(complete)})"))
        _load(export, os.path.join(dest, "catalog.duckdb"))
        fmt = os.path.join(dest, "FORMAT")
        fd = os.open(fmt, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms.FILE_MODE)
        with open(fd, "w") as f:
            f.write(FORMAT_LINE)
            f.flush()
            os.fsync(f.fileno())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = manifest["files"]
    return CopyInfo(url=where, name=copy, store_id=manifest["store_id"],
                    generation=manifest["generation"], files=len(files),
                    bytes=sum(f["size"] for f in files))


def _download(client: S3Store, key: str, path: str, shown: str) -> tuple[int, str]:
    """Stream object ``key`` into the new file ``path``: (size, BLAKE3 hex) of what came."""
    h = blake3.blake3()
    size = 0
    try:
        with open(path, "xb") as f:
            for block in obstore.get(client, key).stream(min_chunk_size=1 << 20):
                block = bytes(block)
                h.update(block)
                f.write(block)
                size += len(block)
    except FileNotFoundError:
        raise CatalogCopyError(errno.EIO, f"{shown}: missing") from None
    return size, h.hexdigest()


def _sql_path(path: str) -> str:
    """``path`` as a SQL string literal."""
    return "'" + path.replace("'", "''") + "'"


def _load(export: str, path: str) -> None:
    """Create the DuckDB file ``path`` from an EXPORT DATABASE directory: its schema, then each
    table from its Parquet file (by name, not by the paths load.sql recorded at export)."""
    db = duckdb.connect(path)
    try:
        with open(os.path.join(export, "schema.sql")) as f:
            db.execute(f.read())
        with open(os.path.join(export, "load.sql")) as f:
            load = f.read()
        for table, fname in re.findall(r"COPY (\S+) FROM '.*/([^'/]+\.parquet)'", load):
            db.execute(f"COPY {table} FROM {_sql_path(os.path.join(export, fname))} (FORMAT parquet)")
        db.execute("CHECKPOINT")
    finally:
        db.close()
    for suffix in ("", ".wal"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, perms.FILE_MODE)


def copy_references(store, settings: S3Settings | None = None) -> set[str]:
    """The chunk hashes named by the extents of every complete copy of ``store`` in its bucket.

    gc must keep these too (docs/format.md, "Catalog copies"): a copy shipped
    before a file was deleted still names its chunks, and restoring it needs
    them. Each copy's ``extents.parquet`` is verified against its manifest.
    """
    if store.pool is None:  # local chunks: no copies
        return set()
    client, bucket, prefix = _bucket(store.chunks.location, settings or store.chunks.settings)
    base = _join(prefix, CATALOGS, store.pool.store_id)
    found = _copies(client, base)
    out: set[str] = set()
    cache = store.copy_references_cache  # copies are immutable: each is read once
    complete = sorted(n for n, fs in found.items() if MANIFEST in fs)
    for gone in set(cache) - set(complete):
        del cache[gone]
    for name in complete:
        if name not in cache:
            cache[name] = _extent_hashes(client, bucket, base, name, store.path)
        out |= cache[name]
    return out


def copy_hashes(url: str, name: str, settings: S3Settings | None = None,
                tmpdir: str | None = None) -> frozenset[str]:
    """The chunk hashes the extents of copy ``name`` under ``url``
    (``s3://BUCKET/PREFIX/catalogs/<id>``) name: what a replica serving that copy reads
    (docs/format.md, "Read-only replicas"). Its ``extents.parquet`` is verified against its
    manifest; ``tmpdir`` holds it meanwhile."""
    client, bucket, base = _bucket(url, settings)
    return _extent_hashes(client, bucket, base, name, tmpdir)


def _extent_hashes(client: S3Store, bucket: str, base: str, name: str,
                   tmpdir: str | None) -> frozenset[str]:
    """The distinct hashes of copy ``name``'s verified ``extents.parquet``."""
    where = f"s3://{bucket}/{_join(base, name)}"
    try:
        manifest = json.loads(bytes(obstore.get(client, _join(base, name, MANIFEST)).bytes()))
    except FileNotFoundError:
        raise CatalogCopyError(errno.ENOENT, f"{where}: no such complete copy") from None
    entry = next((f for f in manifest["files"] if f["name"] == "extents.parquet"), None)
    if entry is None:
        raise CatalogCopyError(errno.EIO, f"{where}: the manifest names no extents.parquet")
    data = bytes(obstore.get(client, _join(base, name, entry["name"])).bytes())
    if len(data) != entry["size"] or blake3.blake3(data).hexdigest() != entry["blake3"]:
        raise CatalogCopyError(errno.EIO, f"{where}/extents.parquet is damaged")
    with tempfile.NamedTemporaryFile(suffix=".parquet", dir=tmpdir) as f:
        f.write(data)
        f.flush()
        db = duckdb.connect()
        try:
            return frozenset(r[0] for r in db.execute(
                "SELECT DISTINCT hash FROM read_parquet(?)", [f.name]).fetchall())
        finally:
            db.close()
