"""An async (trio) 9P2000.L client.

One method per protocol message, plus path-level conveniences. Several
requests may be outstanding on one connection: each gets its own tag, a
single reader task routes replies back, and a request whose caller is
cancelled is flushed with Tflush before its tag is reused.

Example::

    async with connect("tcp:127.0.0.1:5640", uname=b"alice", n_uname=1000) as c:
        await c.write_file(b"notes/todo.txt", b"buy milk\\n")
        print(await c.read_file(b"notes/todo.txt"))
        for entry in await c.listdir(b"notes"):
            print(entry.name)

Errors from the server raise :class:`NinepError`, an ``OSError`` carrying the
errno of the Rlerror.
"""

from __future__ import annotations

import errno as _errno
import functools
import os
import stat as _stat
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

import trio

from . import protocol as p
from .address import Address, parse_address

__all__ = ["Client", "NinepError", "PendingRequest", "connect", "split_path"]

_RECV_CHUNK = 1 << 20
# A Twrite's data at least this long is sent as a buffer of its own, not copied
# into one frame with its header.
_SEPARATE_DATA = 2048


class NinepError(OSError):
    """The server answered Rlerror; ``errno`` is its error code."""

    def __init__(self, code: int, request: str = ""):
        super().__init__(code, os.strerror(code) if code else "error")
        self.request = request

    def __str__(self) -> str:
        return f"{self.request}: [Errno {self.errno}] {self.strerror}" if self.request else super().__str__()


class ConnectionClosed(NinepError):
    """The connection ended while a request was outstanding."""

    def __init__(self, request: str = ""):
        super().__init__(_errno.ECONNRESET, request)


def split_path(path: bytes | str) -> list[bytes]:
    """Split ``a/b//c`` into ``[b"a", b"b", b"c"]``; ``.`` parts are dropped."""
    if isinstance(path, str):
        path = os.fsencode(path)
    return [part for part in path.split(b"/") if part and part != b"."]


class PendingRequest:
    """A request that has been sent and whose reply has not been awaited yet."""

    def __init__(self, client: Client, tag: int, request: p.Message):
        self.client = client
        self.tag = tag
        self.request = request
        self._done = trio.Event()
        self._reply: p.Message | None = None
        self._error: Exception | None = None

    def _resolve(self, reply: p.Message | None, error: Exception | None = None) -> None:
        self._reply, self._error = reply, error
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    async def reply(self) -> p.Message:
        """Wait for the raw reply (Rlerror included); flush if cancelled."""
        try:
            await self._done.wait()
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self.client._flush_and_forget(self)
            raise
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply

    async def result(self) -> p.Message:
        """Wait for the reply; raise NinepError if it is Rlerror."""
        reply = await self.reply()
        if isinstance(reply, p.Rlerror):
            raise NinepError(reply.ecode, type(self.request).__name__)
        return reply


@dataclass(slots=True)
class OpenFile:
    """A fid opened with Tlopen/Tlcreate."""

    fid: int
    qid: p.Qid
    iounit: int


def _receiver(stream: trio.abc.Stream):
    """An async function returning the next bytes received (empty at EOF).

    On a socket they land in one reused buffer (a view of it is returned,
    valid until the next call): a fresh 1 MiB ``recv`` per call costs tens
    of microseconds in allocation alone.
    """
    sock = stream.socket if isinstance(stream, trio.SocketStream) else None
    if sock is None:
        return functools.partial(stream.receive_some, _RECV_CHUNK)
    buf = memoryview(bytearray(_RECV_CHUNK))

    async def receive():
        try:
            n = await sock.recv_into(buf)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        return buf[:n]
    return receive


async def _send_parts(stream: trio.abc.Stream, parts: list) -> None:
    """Send the buffers of ``parts`` in order: one ``sendmsg`` on a socket, else one send each."""
    sock = stream.socket if isinstance(stream, trio.SocketStream) else None
    if sock is None or not hasattr(sock, "sendmsg"):
        for part in parts:
            await stream.send_all(part)
        return
    views = [memoryview(b) for b in parts]
    while views:
        n = await sock.sendmsg(views)
        while views and n >= len(views[0]):
            n -= len(views.pop(0))
        if views:
            views[0] = views[0][n:]


class Client:
    """A 9P2000.L connection. Create it with :func:`connect`."""

    def __init__(self, stream: trio.abc.Stream, *, msize: int):
        self._stream = stream
        self.msize = msize
        self._send_lock = trio.Lock()
        self._pending: dict[int, PendingRequest] = {}
        self._free_tags: list[int] = []
        self._next_tag = 0
        self._tag_available = trio.Condition()
        self._next_fid = 1
        self._free_fids: list[int] = []
        self._closed = False
        self.root_fid: int | None = None
        self.root_qid: p.Qid | None = None
        self.version = p.VERSION_9P2000L

    # -- plumbing --------------------------------------------------------------

    async def _reader(self) -> None:
        frames = p.FrameBuffer(max_size=max(self.msize, p.MAX_MSIZE))
        receive = _receiver(self._stream)
        try:
            while True:
                data = await receive()
                if not data:
                    break
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    reply = p.decode(frame)
                    pending = self._pending.pop(reply.tag, None)
                    if pending is not None:
                        pending._resolve(reply)
                        if reply.tag != p.NOTAG:
                            await self._release_tag(reply.tag)
        except (trio.BrokenResourceError, trio.ClosedResourceError, p.ProtocolError):
            pass
        finally:
            self._closed = True
            for tag, pending in list(self._pending.items()):
                pending._resolve(None, ConnectionClosed(type(pending.request).__name__))
            self._pending.clear()

    async def _alloc_tag(self) -> int:
        async with self._tag_available:
            while True:
                if self._free_tags:
                    return self._free_tags.pop()
                if self._next_tag < p.NOTAG:
                    self._next_tag += 1
                    return self._next_tag - 1
                await self._tag_available.wait()

    async def _release_tag(self, tag: int) -> None:
        async with self._tag_available:
            self._free_tags.append(tag)
            self._tag_available.notify()

    async def _send(self, msg: p.Message) -> None:
        head, data = p.encode_parts(msg)
        size = len(head) + len(data)
        if size > self.msize:
            raise ValueError(f"{type(msg).__name__} of {size} bytes exceeds msize {self.msize}")
        async with self._send_lock:
            if len(data) < _SEPARATE_DATA:
                await self._stream.send_all(head + data if len(data) else head)
            else:  # a Twrite's data goes out as it is, not copied into one frame
                await _send_parts(self._stream, [head, data])

    async def start(self, msg: p.Message, *, tag: int | None = None) -> PendingRequest:
        """Send a request without waiting for its reply.

        The tag is allocated unless given (Tversion uses NOTAG).
        """
        if self._closed:
            raise ConnectionClosed(type(msg).__name__)
        if tag is None:
            tag = await self._alloc_tag()
        msg.tag = tag
        pending = PendingRequest(self, tag, msg)
        self._pending[tag] = pending
        try:
            await self._send(msg)
        except BaseException:
            self._pending.pop(tag, None)
            if tag != p.NOTAG:
                await self._release_tag(tag)
            raise
        return pending

    async def start_many(self, msgs: list[p.Message]) -> list[PendingRequest]:
        """Send several requests in one write, all outstanding at once."""
        if self._closed:
            raise ConnectionClosed("start_many")
        pendings = []
        for msg in msgs:
            msg.tag = await self._alloc_tag()
            pendings.append(PendingRequest(self, msg.tag, msg))
        frames = [p.encode(m) for m in msgs]
        for pending in pendings:
            self._pending[pending.tag] = pending
        try:
            async with self._send_lock:
                await self._stream.send_all(b"".join(frames))
        except BaseException:
            for pending in pendings:
                if self._pending.pop(pending.tag, None) is not None:
                    await self._release_tag(pending.tag)
            raise
        return pendings

    async def rpc(self, msg: p.Message) -> p.Message:
        """Send a request and return its reply; Rlerror raises NinepError."""
        pending = await self.start(msg)
        return await pending.result()

    async def flush(self, pending: PendingRequest) -> None:
        """Tflush a pending request; returns once Rflush (or its reply) arrived.

        Afterwards ``pending`` holds the original reply if the server answered
        before the flush, otherwise it is still not done.
        """
        await self.rpc(p.Tflush(oldtag=pending.tag))
        if not pending.done:
            # The request was flushed: its tag is free again.
            if self._pending.pop(pending.tag, None) is not None:
                await self._release_tag(pending.tag)

    async def _flush_and_forget(self, pending: PendingRequest) -> None:
        if pending.done or self._closed:
            return
        with trio.move_on_after(10):
            try:
                await self.flush(pending)
            except (NinepError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def alloc_fid(self) -> int:
        """A fid number not in use on this connection."""
        if self._free_fids:
            return self._free_fids.pop()
        self._next_fid += 1
        return self._next_fid - 1

    def _free_fid(self, fid: int) -> None:
        self._free_fids.append(fid)

    # -- one call per message ------------------------------------------------

    async def negotiate(self, msize: int, version: bytes = p.VERSION_9P2000L) -> p.Rversion:
        """Tversion (with NOTAG); sets ``self.msize`` to the server's answer."""
        pending = await self.start(p.Tversion(msize=msize, version=version), tag=p.NOTAG)
        reply = await pending.result()
        assert isinstance(reply, p.Rversion)
        self.msize = min(self.msize, reply.msize)
        self.version = reply.version
        return reply

    async def auth(self, afid: int, uname: bytes, aname: bytes, n_uname: int) -> p.Qid:
        reply = await self.rpc(p.Tauth(afid=afid, uname=uname, aname=aname, n_uname=n_uname))
        return reply.aqid

    async def attach(
        self, fid: int, uname: bytes = b"", aname: bytes = b"", n_uname: int = p.NONUNAME, afid: int = p.NOFID
    ) -> p.Qid:
        reply = await self.rpc(p.Tattach(fid=fid, afid=afid, uname=uname, aname=aname, n_uname=n_uname))
        return reply.qid

    async def walk(self, fid: int, newfid: int, names: list[bytes]) -> list[p.Qid]:
        """One Twalk of at most 16 names; returns the qids (maybe fewer than names)."""
        reply = await self.rpc(p.Twalk(fid=fid, newfid=newfid, wnames=list(names)))
        return reply.qids

    async def lopen(self, fid: int, flags: int) -> tuple[p.Qid, int]:
        reply = await self.rpc(p.Tlopen(fid=fid, flags=flags))
        return reply.qid, reply.iounit

    async def lcreate(self, fid: int, name: bytes, flags: int, mode: int, gid: int = 0) -> tuple[p.Qid, int]:
        reply = await self.rpc(p.Tlcreate(fid=fid, name=name, flags=flags, mode=mode, gid=gid))
        return reply.qid, reply.iounit

    async def read(self, fid: int, offset: int, count: int) -> bytes:
        count = min(count, self.msize - p.IOHDRSZ)
        reply = await self.rpc(p.Tread(fid=fid, offset=offset, count=count))
        return reply.data

    async def write(self, fid: int, offset: int, data: bytes) -> int:
        reply = await self.rpc(p.Twrite(fid=fid, offset=offset, data=data))
        return reply.count

    async def clunk(self, fid: int) -> None:
        try:
            await self.rpc(p.Tclunk(fid=fid))
        finally:
            # A clunked fid is gone even if the server complained.
            self._free_fid(fid)

    async def remove(self, fid: int) -> None:
        try:
            await self.rpc(p.Tremove(fid=fid))
        finally:
            self._free_fid(fid)

    async def statfs(self, fid: int) -> p.Rstatfs:
        return await self.rpc(p.Tstatfs(fid=fid))

    async def symlink(self, dfid: int, name: bytes, target: bytes, gid: int = 0) -> p.Qid:
        return (await self.rpc(p.Tsymlink(fid=dfid, name=name, symtgt=target, gid=gid))).qid

    async def mknod(self, dfid: int, name: bytes, mode: int, major: int = 0, minor: int = 0, gid: int = 0) -> p.Qid:
        reply = await self.rpc(p.Tmknod(dfid=dfid, name=name, mode=mode, major=major, minor=minor, gid=gid))
        return reply.qid

    async def rename(self, fid: int, dfid: int, name: bytes) -> None:
        await self.rpc(p.Trename(fid=fid, dfid=dfid, name=name))

    async def renameat(self, olddirfid: int, oldname: bytes, newdirfid: int, newname: bytes) -> None:
        await self.rpc(p.Trenameat(olddirfid=olddirfid, oldname=oldname, newdirfid=newdirfid, newname=newname))

    async def readlink(self, fid: int) -> bytes:
        return (await self.rpc(p.Treadlink(fid=fid))).target

    async def getattr(self, fid: int, mask: int = p.GetattrMask.ALL) -> p.Rgetattr:
        return await self.rpc(p.Tgetattr(fid=fid, request_mask=mask))

    async def setattr(
        self,
        fid: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime: int | bool | None = None,
        mtime: int | bool | None = None,
        ctime: bool = False,
    ) -> None:
        """Tsetattr. ``atime``/``mtime`` are ns since the epoch, or True for "now"."""
        v = p.SetattrValid
        msg = p.Tsetattr(fid=fid)
        if mode is not None:
            msg.valid |= v.MODE
            msg.mode = mode
        if uid is not None:
            msg.valid |= v.UID
            msg.uid = uid
        if gid is not None:
            msg.valid |= v.GID
            msg.gid = gid
        if size is not None:
            msg.valid |= v.SIZE
            msg.size = size
        if atime is not None:
            msg.valid |= v.ATIME
            if atime is not True:
                msg.valid |= v.ATIME_SET
                msg.atime_sec, msg.atime_nsec = divmod(int(atime), 1_000_000_000)
        if mtime is not None:
            msg.valid |= v.MTIME
            if mtime is not True:
                msg.valid |= v.MTIME_SET
                msg.mtime_sec, msg.mtime_nsec = divmod(int(mtime), 1_000_000_000)
        if ctime:
            msg.valid |= v.CTIME
        await self.rpc(msg)

    async def xattrwalk(self, fid: int, newfid: int, name: bytes = b"") -> int:
        """Txattrwalk; returns the size of the value (or of the name list)."""
        return (await self.rpc(p.Txattrwalk(fid=fid, newfid=newfid, name=name))).size

    async def xattrcreate(self, fid: int, name: bytes, size: int, flags: int = 0) -> None:
        await self.rpc(p.Txattrcreate(fid=fid, name=name, attr_size=size, flags=flags))

    async def readdir(self, fid: int, offset: int, count: int) -> list[p.Dirent]:
        count = min(count, self.msize - p.IOHDRSZ)
        reply = await self.rpc(p.Treaddir(fid=fid, offset=offset, count=count))
        return p.decode_dirents(reply.data)

    async def fsync(self, fid: int, datasync: bool = False) -> None:
        await self.rpc(p.Tfsync(fid=fid, datasync=int(datasync)))

    async def lock(
        self,
        fid: int,
        type: int,
        start: int = 0,
        length: int = 0,
        *,
        flags: int = 0,
        proc_id: int = 0,
        client_id: bytes = b"ninep-client",
    ) -> int:
        """Tlock; returns the LockStatus."""
        msg = p.Tlock(fid=fid, type=type, flags=flags, start=start, length=length, proc_id=proc_id, client_id=client_id)
        return (await self.rpc(msg)).status

    async def getlock(
        self, fid: int, type: int, start: int = 0, length: int = 0, *, proc_id: int = 0, client_id: bytes = b"ninep-client"
    ) -> p.Rgetlock:
        msg = p.Tgetlock(fid=fid, type=type, start=start, length=length, proc_id=proc_id, client_id=client_id)
        return await self.rpc(msg)

    async def link(self, dfid: int, fid: int, name: bytes) -> None:
        await self.rpc(p.Tlink(dfid=dfid, fid=fid, name=name))

    async def mkdir(self, dfid: int, name: bytes, mode: int = 0o755, gid: int = 0) -> p.Qid:
        return (await self.rpc(p.Tmkdir(dfid=dfid, name=name, mode=mode, gid=gid))).qid

    async def unlinkat(self, dirfid: int, name: bytes, flags: int = 0) -> None:
        await self.rpc(p.Tunlinkat(dirfid=dirfid, name=name, flags=flags))

    # -- path-level conveniences ---------------------------------------------

    def _root(self) -> int:
        if self.root_fid is None:
            raise RuntimeError("not attached")
        return self.root_fid

    async def walk_path(self, path: bytes | str, *, start: int | None = None) -> int:
        """A new fid for ``path`` (relative to the attach root or ``start``).

        Walks 16 names per Twalk. Raises NinepError(ENOENT) if any part is
        missing, leaving no fid behind.
        """
        names = split_path(path)
        src = self._root() if start is None else start
        newfid = self.alloc_fid()
        if not names:
            await self.walk(src, newfid, [])
            return newfid
        walked_fid = src
        try:
            for i in range(0, len(names), p.MAX_WALK_NAMES):
                part = names[i : i + p.MAX_WALK_NAMES]
                qids = await self.walk(walked_fid, newfid, part)
                walked_fid = newfid
                if len(qids) != len(part):
                    raise NinepError(_errno.ENOENT, f"walk {os.fsdecode(b'/'.join(names))}")
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._discard_fid(newfid, exists=walked_fid == newfid)
            raise
        return newfid

    async def _discard_fid(self, fid: int, *, exists: bool) -> None:
        """Forget a fid after a failed walk (some servers keep partial walks)."""
        if exists and not self._closed:
            try:
                await self.rpc(p.Tclunk(fid=fid))
            except NinepError:
                pass
        self._free_fid(fid)

    @asynccontextmanager
    async def fid(self, path: bytes | str = b"") -> AsyncIterator[int]:
        """Context manager: a fid walked to ``path``, clunked on exit."""
        fid = await self.walk_path(path)
        try:
            yield fid
        finally:
            with trio.CancelScope(shield=True):
                await self.clunk(fid)

    async def open(self, path: bytes | str, flags: int = p.OpenFlags.RDONLY) -> OpenFile:
        """Walk to ``path`` and Tlopen it."""
        fid = await self.walk_path(path)
        try:
            qid, iounit = await self.lopen(fid, flags)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.clunk(fid)
            raise
        return OpenFile(fid, qid, iounit)

    async def create(self, path: bytes | str, flags: int = p.OpenFlags.RDWR, mode: int = 0o644, gid: int = 0) -> OpenFile:
        """Create (Tlcreate) the file at ``path`` and return it open."""
        *parent, name = split_path(path)
        fid = await self.walk_path(b"/".join(parent))
        try:
            qid, iounit = await self.lcreate(fid, name, flags, mode, gid)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.clunk(fid)
            raise
        return OpenFile(fid, qid, iounit)

    def _chunk(self, iounit: int) -> int:
        return min(iounit or self.msize, self.msize) - p.IOHDRSZ

    async def read_all(self, fid: int, *, offset: int = 0) -> bytes:
        """Read an open fid from ``offset`` to end of file."""
        out = bytearray()
        chunk = self._chunk(0)
        while True:
            data = await self.read(fid, offset + len(out), chunk)
            if not data:
                return bytes(out)
            out += data

    async def write_all(self, fid: int, data: bytes, *, offset: int = 0) -> None:
        """Write all of ``data`` to an open fid, in msize-sized pieces."""
        chunk = self._chunk(0)
        view = memoryview(data)
        done = 0
        while done < len(view):
            n = await self.write(fid, offset + done, bytes(view[done : done + chunk]))
            if n <= 0:
                raise NinepError(_errno.EIO, "short write")
            done += n

    async def read_file(self, path: bytes | str) -> bytes:
        """The whole content of the file at ``path``."""
        f = await self.open(path, p.OpenFlags.RDONLY)
        try:
            return await self.read_all(f.fid)
        finally:
            with trio.CancelScope(shield=True):
                await self.clunk(f.fid)

    async def write_file(self, path: bytes | str, data: bytes, *, mode: int = 0o644, fsync: bool = False) -> None:
        """Create or truncate the file at ``path`` and write ``data`` to it."""
        try:
            f = await self.open(path, p.OpenFlags.WRONLY | p.OpenFlags.TRUNC)
        except NinepError as exc:
            if exc.errno != _errno.ENOENT:
                raise
            f = await self.create(path, p.OpenFlags.WRONLY | p.OpenFlags.TRUNC, mode)
        try:
            await self.write_all(f.fid, data)
            if fsync:
                await self.fsync(f.fid)
        finally:
            with trio.CancelScope(shield=True):
                await self.clunk(f.fid)

    async def listdir(self, path: bytes | str = b"", *, with_dots: bool = False) -> list[p.Dirent]:
        """Every entry of the directory at ``path`` (without . and .. by default)."""
        f = await self.open(path, p.OpenFlags.RDONLY | p.OpenFlags.DIRECTORY)
        try:
            out: list[p.Dirent] = []
            offset = 0
            while True:
                entries = await self.readdir(f.fid, offset, self.msize - p.IOHDRSZ)
                if not entries:
                    break
                out += entries
                offset = entries[-1].offset
        finally:
            with trio.CancelScope(shield=True):
                await self.clunk(f.fid)
        if not with_dots:
            out = [e for e in out if e.name not in (b".", b"..")]
        return out

    async def stat(self, path: bytes | str = b"") -> p.Rgetattr:
        """Tgetattr (all fields) of ``path``."""
        async with self.fid(path) as fid:
            return await self.getattr(fid)

    async def exists(self, path: bytes | str) -> bool:
        try:
            fid = await self.walk_path(path)
        except NinepError as exc:
            if exc.errno == _errno.ENOENT:
                return False
            raise
        await self.clunk(fid)
        return True

    async def makedirs(self, path: bytes | str, mode: int = 0o755) -> None:
        """``mkdir -p``: create every missing directory along ``path``."""
        names = split_path(path)
        fid = await self.walk_path(b"")
        try:
            for name in names:
                try:
                    await self.mkdir(fid, name, mode)
                except NinepError as exc:
                    if exc.errno != _errno.EEXIST:
                        raise
                nxt = self.alloc_fid()
                try:
                    await self.walk(fid, nxt, [name])
                except BaseException:
                    self._free_fid(nxt)
                    raise
                await self.clunk(fid)
                fid = nxt
            st = await self.getattr(fid, p.GetattrMask.MODE)
            if not _stat.S_ISDIR(st.mode):
                raise NinepError(_errno.ENOTDIR, f"makedirs {os.fsdecode(path)}")
        finally:
            with trio.CancelScope(shield=True):
                await self.clunk(fid)

    async def unlink(self, path: bytes | str, *, directory: bool = False) -> None:
        """Remove the name at ``path`` (Tunlinkat, AT_REMOVEDIR for directories)."""
        *parent, name = split_path(path)
        async with self.fid(b"/".join(parent)) as dfid:
            await self.unlinkat(dfid, name, p.AT_REMOVEDIR if directory else 0)

    async def aclose(self) -> None:
        """Close the connection; outstanding requests fail with ConnectionClosed."""
        self._closed = True
        await self._stream.aclose()


async def _open_stream(address: Address) -> trio.abc.Stream:
    if address.kind == "unix":
        return await trio.open_unix_socket(address.path)
    return await trio.open_tcp_stream(address.host, address.port)


@asynccontextmanager
async def connect(
    address: str | Address,
    *,
    msize: int = 1 << 20,
    uname: bytes = b"",
    n_uname: int | None = None,
    aname: bytes = b"",
    attach: bool = True,
    negotiate: bool = True,
) -> AsyncIterator[Client]:
    """Connect, negotiate 9P2000.L and (by default) attach.

    ``n_uname`` defaults to this process's uid. With ``attach=False`` the
    caller does Tattach itself; with ``negotiate=False`` it does Tversion too. The connection and its reader task live for
    the ``async with`` block.
    """
    addr = parse_address(address) if isinstance(address, str) else address
    stream = await _open_stream(addr)
    if n_uname is None:
        n_uname = os.getuid()
    if not uname:
        uname = str(n_uname).encode()
    client = Client(stream, msize=msize)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client._reader)
        try:
            if negotiate:
                reply = await client.negotiate(msize)
                if reply.version != p.VERSION_9P2000L:
                    raise NinepError(_errno.EPROTONOSUPPORT, f"server speaks {reply.version!r}, not 9P2000.L")
            if attach and negotiate:
                client.root_fid = client.alloc_fid()
                client.root_qid = await client.attach(client.root_fid, uname, aname, n_uname)
            yield client
        finally:
            with trio.CancelScope(shield=True):
                if client.root_fid is not None and not client._closed:
                    with trio.move_on_after(5):
                        try:
                            await client.clunk(client.root_fid)
                        except (NinepError, trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                await client.aclose()
