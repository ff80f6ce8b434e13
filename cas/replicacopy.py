"""A read-only replica's working copies: catalog copies restored on another host.

``ninep serve --replica`` serves the snapshots of a store from the catalog
copies it ships (cas/catalogcopy.py) and the chunks of its pool. This module
is the blocking part: it restores the newest copy into a working directory,
opens it as a replica store (``Store.open(replica=True)``: no pool membership
under the primary's id, no shipping, no gc), and keeps the replica's own
membership in the pool, whose published set names the chunks of the copies
it serves (docs/format.md, "Read-only replicas")::

    WORKDIR/lock                  flock'ed while a replica runs on it
    WORKDIR/replica-id            the replica's id in the pool (32 hex digits), kept across restarts
    WORKDIR/pool-cache/           the pool client's (empty) chunk cache
    WORKDIR/copies/<copy name>/   a working copy: a store directory restored from that copy,
                                  marked by a REPLICA file (only Store.open(replica=True) opens it)

The replica writes nothing to the bucket but its registry record and its
published sets; working copies are local and disposable.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil

import structlog

from . import catalogcopy, perms
from .errors import FsError, StoreLockedError
from .pool import GRACE, REFRESH_INTERVAL, ROLE_REPLICA, Pool, new_store_id
from .s3config import S3Settings
from .store import REPLICA_MARKER, Store

log = structlog.get_logger(__name__)

ID_FILE = "replica-id"
COPIES = "copies"
_ID = re.compile(r"^[0-9a-f]{32}$")


def chunk_location(url: str) -> str:
    """``s3://BUCKET/PREFIX`` of ``s3://BUCKET/PREFIX/catalogs/<store id>``."""
    head, sep, _sid = url.rstrip("/").rpartition(f"/{catalogcopy.CATALOGS}/")
    if not sep:
        raise ValueError(f"{url}: expected s3://BUCKET/PREFIX/{catalogcopy.CATALOGS}/STORE-ID")
    return head


class WorkingCopies:
    """The working directory of one replica of the store whose copies are under ``url``
    (``s3://BUCKET/PREFIX/catalogs/<store id>``).

    Use as a context manager: it locks ``workdir`` (StoreLockedError if another
    replica runs on it), removes working copies a previous run left, and joins
    the pool under the replica's own id with role ``replica``.
    """

    def __init__(self, workdir: str, url: str, settings: S3Settings | None = None, *,
                 refresh_interval: float | None = None, grace: float | None = None,
                 chunk_cache_bytes: int | None = None, chunk_memory_bytes: int | None = None,
                 cache_bytes: int | None = None):
        self.workdir = os.path.abspath(workdir)
        self.url = url
        self.location = chunk_location(url)
        self.settings = settings
        self.refresh_interval = REFRESH_INTERVAL if refresh_interval is None else refresh_interval
        self.grace = GRACE if grace is None else grace
        self.chunk_cache_bytes = chunk_cache_bytes
        self.chunk_memory_bytes = chunk_memory_bytes
        self.cache_bytes = cache_bytes            # the metadata cache's bound (None: the default)
        self.pool: Pool | None = None
        self._objects = None
        self._lockfd: int | None = None

    # -- lifecycle
    def __enter__(self) -> "WorkingCopies":
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, perms.DIR_MODE)
        fd = os.open(os.path.join(self.workdir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     perms.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(self.workdir) from None
        self._lockfd = fd
        try:
            shutil.rmtree(os.path.join(self.workdir, COPIES), ignore_errors=True)
            os.makedirs(os.path.join(self.workdir, COPIES), mode=perms.DIR_MODE)
            self._join()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the pool client and the lock (the registry record stays, like a store's)."""
        if self._objects is not None:
            self._objects.close()
            self._objects = None
        if self._lockfd is not None:
            os.close(self._lockfd)
            self._lockfd = None

    def _join(self) -> None:
        from .s3chunks import S3Chunks

        sid = self.replica_id()
        self._objects = S3Chunks(self.location, self.settings or S3Settings.resolve(),
                                 os.path.join(self.workdir, "pool-cache"), 0, chunk_size=1 << 20)
        self.pool = Pool(self._objects, sid, self.workdir, refresh_interval=self.refresh_interval,
                         grace=self.grace, role=ROLE_REPLICA)
        self.pool.register()

    def replica_id(self) -> str:
        """The replica's id in the pool, created at its first run and kept in ``replica-id``."""
        path = os.path.join(self.workdir, ID_FILE)
        try:
            with open(path) as f:
                sid = f.read().strip()
            if _ID.match(sid):
                return sid
        except FileNotFoundError:
            pass
        sid = new_store_id()
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     perms.FILE_MODE)
        with open(fd, "w") as f:
            f.write(sid + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + ".tmp", path)
        return sid

    # -- copies
    def newest(self) -> str | None:
        """The name of the newest complete copy in the bucket, or None."""
        names = catalogcopy.copies(self.url, self.settings)
        return names[-1] if names else None

    def hashes(self, name: str) -> frozenset[str]:
        """The chunks copy ``name`` references (what serving it reads)."""
        return catalogcopy.copy_hashes(self.url, name, self.settings, self.workdir)

    def publish(self, hashes: set[str] | frozenset[str]) -> None:
        """Publish ``hashes`` as the replica's set in the pool."""
        self.pool.publish(set(hashes))

    def checkout(self, name: str) -> Store:
        """Restore copy ``name`` (verified) into ``copies/<name>`` and open it as a replica store."""
        dest = os.path.join(self.workdir, COPIES, name)
        if os.path.dirname(os.path.normpath(dest)) != os.path.join(self.workdir, COPIES):
            raise FsError(errno.EINVAL, f"bad copy name {name!r}")
        shutil.rmtree(dest, ignore_errors=True)
        try:
            info = catalogcopy.restore(self.url, dest, self.settings, copy=name)
            fd = os.open(os.path.join(dest, REPLICA_MARKER), os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | os.O_CLOEXEC, perms.FILE_MODE)
            with open(fd, "w") as f:
                f.write(f"a working copy of {info.url}, served by a read-only replica\n")
            more = {} if self.cache_bytes is None else {"cache_bytes": self.cache_bytes}
            store = Store.open(dest, replica=True, s3=self.settings,
                               chunk_cache_bytes=self.chunk_cache_bytes,
                               chunk_memory_bytes=self.chunk_memory_bytes, **more)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        log.info("working copy restored", copy=info.url, generation=info.generation)
        return store

    def discard(self, store: Store) -> None:
        """Close a working copy and delete its directory."""
        try:
            store.close()
        finally:
            shutil.rmtree(store.path, ignore_errors=True)
