"""POSIX byte-range locks over 9P: Tlock and Tgetlock, on the server's lock table.

Locks are advisory and per (view, inode); the owner is the connection, the
client id and the process id the client sends.
"""

from __future__ import annotations

import errno

from cas import FsError

from . import protocol as p
from .connection import Connection
from .fids import Fid
from .locks import LockTable, lock_range


class LockOps:
    """Tlock and Tgetlock of one connection."""

    def __init__(self, conn: Connection, table: LockTable):
        self.conn = conn
        self.table = table

    def _lock_fid(self, fid_no: int, lock_type: int) -> Fid:
        """The open fid a Tlock or Tgetlock names, once its lock type is known to be valid."""
        fid = self.conn.node(fid_no)
        if not fid.opened:
            raise FsError(errno.EBADF, "lock on a fid that is not open")
        if lock_type not in (p.LockType.RDLCK, p.LockType.WRLCK, p.LockType.UNLCK):
            raise FsError(errno.EINVAL, "bad lock type")
        return fid

    async def lock(self, msg: p.Tlock) -> p.Rlock:
        fid = self._lock_fid(msg.fid, msg.type)
        # Any open fid may take either lock type, on read-only exports and in
        # snapshots too: flock(LOCK_EX) on a read-only descriptor reaches us as
        # a write lock, and fcntl's open-mode rule is the client kernel's to
        # enforce. Locks are advisory and change no data (DESIGN.md §4, §5).
        key = (fid.view.name, fid.ino)
        owner = (self.conn.session_id, msg.client_id, msg.proc_id)
        start, end = lock_range(msg.start, msg.length)
        table = self.table
        if table.try_lock(key, owner, msg.type, start, end):
            return p.Rlock(status=p.LockStatus.SUCCESS)
        if not msg.flags & p.LockFlags.BLOCK:
            return p.Rlock(status=p.LockStatus.BLOCKED)
        # Hold the request until granted: a BLOCKED reply would make the
        # kernel sleep and poll. Tflush or session end cancels the wait.
        if not await table.lock_wait(key, owner, msg.type, start, end):
            return p.Rlock(status=p.LockStatus.BLOCKED)  # too many waiting: the client polls
        return p.Rlock(status=p.LockStatus.SUCCESS)

    def getlock(self, msg: p.Tgetlock) -> p.Rgetlock:
        fid = self._lock_fid(msg.fid, msg.type)
        key = (fid.view.name, fid.ino)
        owner = (self.conn.session_id, msg.client_id, msg.proc_id)
        start, end = lock_range(msg.start, msg.length)
        held = self.table.conflict(key, owner, msg.type, start, end)
        if held is None:
            return p.Rgetlock(type=p.LockType.UNLCK, start=msg.start, length=msg.length, proc_id=msg.proc_id, client_id=msg.client_id)
        length = 0 if held.end == 2**64 - 1 else held.end - held.start + 1
        return p.Rgetlock(type=held.type, start=held.start, length=length, proc_id=held.owner[2], client_id=held.owner[1])

    def release_all(self) -> None:
        """Drop every lock this connection holds or waits for."""
        self.table.release_session(self.conn.session_id)
