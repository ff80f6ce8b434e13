"""File data: Tread, Twrite and Tfsync (on files, and on xattr fids' values).

Reads served from memory and writes that only fill buffers are answered
inline on the trio thread (the ``*_inline`` methods); the others run in a
worker thread through the server's I/O runner.
"""

from __future__ import annotations

import errno

from cas import FsError

from . import protocol as p
from .access import R, W, mode_after_write
from .connection import Connection, writable
from .context import HandlerContext
from .fids import NODE, XATTR_READ, XATTR_WRITE, Fid

_ACCMODE = p.OpenFlags.ACCMODE
_WRITE_FLAGS = p.OpenFlags.WRONLY | p.OpenFlags.RDWR


class DataOps:
    """Tread, Twrite and Tfsync of one connection."""

    def __init__(self, conn: Connection, ctx: HandlerContext):
        self.conn = conn
        self.run_io = ctx.run_io
        self.metrics = ctx.metrics

    def _open_for(self, fid_no: int, want: int) -> Fid:
        fid = self.conn.fids.get(fid_no)
        if fid.kind == XATTR_READ and want == R or fid.kind == XATTR_WRITE and want == W:
            return fid
        if fid.kind != NODE or not fid.opened:
            raise FsError(errno.EBADF, "fid is not open")
        acc = fid.open_flags & _ACCMODE
        if want == R and acc == p.OpenFlags.WRONLY or want == W and not acc & _WRITE_FLAGS:
            raise FsError(errno.EBADF, "fid is not open for " + ("reading" if want == R else "writing"))
        return fid

    def read_inline(self, msg: p.Tread) -> p.Rread | None:
        """Answer a Tread on the event loop if no disk access is needed, else None.

        Sequential readers mostly land here: :meth:`read` has the kernel read ahead.
        """
        fid = self._open_for(msg.fid, R)
        count = min(msg.count, self.conn.msize - 11)
        if fid.kind == XATTR_READ:
            return p.Rread(data=bytes(fid.xattr_value[msg.offset : msg.offset + count]))
        if fid.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        data = fid.view.volume.read_cached(fid.ino, msg.offset, count)
        if data is None:
            return None
        return self._read_done(data)

    async def read(self, msg: p.Tread) -> p.Rread:
        """A Tread that needs the disk (run after :meth:`read_inline` declined)."""
        fid = self._open_for(msg.fid, R)
        count = min(msg.count, self.conn.msize - 11)
        data = await self.run_io(fid.view.volume.read, fid.ino, msg.offset, count)
        return self._read_done(data)

    def _read_done(self, data) -> p.Rread:
        self.metrics.read_bytes += p.blob_length(data)
        return p.Rread(data=data)

    def write_inline(self, msg: p.Twrite) -> p.Rwrite | None:
        """Answer a Twrite on the event loop if it only fills memory buffers, else None."""
        fid = self._open_for(msg.fid, W)
        if fid.kind == XATTR_WRITE:
            end = msg.offset + len(msg.data)
            if end > fid.xattr_size:
                raise FsError(errno.ERANGE, "xattr value longer than announced in Txattrcreate")
            buf = fid.xattr_value
            if len(buf) < end:
                buf.extend(bytes(end - len(buf)))
            buf[msg.offset : end] = msg.data
            return p.Rwrite(count=len(msg.data))
        writable(fid)
        self._drop_privs(fid)
        vol = fid.view.volume
        n = vol.write_nowait(fid.ino, self._write_offset(fid, msg), msg.data)
        if n is None:
            return None
        self.metrics.written_bytes += n
        return p.Rwrite(count=n)

    async def write(self, msg: p.Twrite) -> p.Rwrite:
        """A Twrite that stores chunks or waits (run after :meth:`write_inline` declined)."""
        fid = self._open_for(msg.fid, W)
        self._drop_privs(fid)
        vol = fid.view.volume
        n = await self.run_io(vol.write, fid.ino, self._write_offset(fid, msg), msg.data)
        self.metrics.written_bytes += n
        return p.Rwrite(count=n)

    @staticmethod
    def _drop_privs(fid: Fid) -> None:
        """Clear set-user-ID / set-group-ID before a write, as Linux does (see mode_after_write)."""
        attr = fid.view.volume.getattr(fid.ino)
        mode = mode_after_write(attr.mode, attr.gid, fid.cred)
        if mode != attr.mode:
            fid.view.volume.setattr(fid.ino, mode=mode)

    @staticmethod
    def _write_offset(fid: Fid, msg: p.Twrite) -> int:
        if fid.open_flags & p.OpenFlags.APPEND:
            return fid.view.volume.getattr(fid.ino).size
        return msg.offset

    async def fsync(self, msg: p.Tfsync) -> p.Rfsync:
        fid = self.conn.node(msg.fid)
        if not fid.view.read_only:
            await self.run_io(fid.view.volume.fsync, fid.ino)
        return p.Rfsync()
