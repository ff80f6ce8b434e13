"""Import a directory tree into a dataset and export a dataset (or snapshot) back out.

Both go through the Volume API, so the usual machinery applies: whole chunks
are hashed and deduplicated as they are written, partial chunks are buffered,
and the metadata reaches DuckDB in group commits (one every
``commit_every`` objects, not one per file).

What round-trips: file types (regular, directory, symlink, hard links, fifo,
socket, character and block devices), mode bits including setuid/setgid/
sticky, owners, atime/mtime (ctime cannot be set on export), xattrs in every
namespace the store accepts (user., trusted., security., and POSIX ACLs in
system., each inode getting exactly the source's ACLs), and
sparse holes (import reads only the data regions found with SEEK_DATA and
SEEK_HOLE; export writes only non-zero chunks and leaves holes elsewhere;
an all-zero chunk is a hole in the store, so it comes back as one).
Owners, and setuid/setgid with them, come back on export only when asked
for and when running as root (see :func:`export_tree`).

Host directories are opened once and walked by held descriptors, never by
path again, and no symlink on the host is followed (cas/hostdirs.py): a
path swapped for a symlink while a transfer waits or runs leads nowhere.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable

import structlog

from . import acl
from .errors import FsError
from .hostdirs import HostDir, magic_path, open_dir_at, open_host_dir
from .volume import Volume

log = structlog.get_logger(__name__)

_COPY_BLOCK = 1 << 20


@dataclass
class TransferReport:
    """Counts of what an import or export wrote, and what it could not."""

    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    specials: int = 0
    bytes: int = 0           # data bytes copied (holes excluded)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


Progress = Callable[[int], None]


def _p(path: bytes) -> str:
    return os.fsdecode(path)


# ------------------------------------------------------------------- import

def scan_size(src: str | bytes, *, roots=None) -> int:
    """Apparent bytes of the regular files under ``src`` (hard links once), for progress.

    Walks held directory descriptors (``os.fwalk``), like :func:`import_tree`.
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    top = open_host_dir(src, roots=roots)
    try:
        for _, _, files, dfd in os.fwalk(".", dir_fd=top.fd):
            for name in files:
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    if st.st_nlink > 1:
                        key = (st.st_dev, st.st_ino)
                        if key in seen:
                            continue
                        seen.add(key)
                    total += st.st_size
    finally:
        top.close()
    return total


def _ensure_dir(vol: Volume, path: bytes) -> int:
    """The inode of directory ``path`` in ``vol``, creating missing components (0755, root)."""
    cur = vol.root
    for part in [p for p in path.split(b"/") if p]:
        try:
            attr = vol.lookup(cur, part)
        except FsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            attr = vol.mkdir(cur, part, 0o755, 0, 0)
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR, f"{_p(path)}: {_p(part)} is not a directory")
        cur = attr.ino
    return cur


def _open_source(dir_fd: int, name: bytes) -> int:
    # O_NONBLOCK: a name swapped for a fifo meanwhile must not block the open
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        return os.open(name, flags | getattr(os, "O_NOATIME", 0), dir_fd=dir_fd)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(name, flags, dir_fd=dir_fd)


def _data_regions(fd: int, size: int):
    """(start, end) of the data regions of an open file; the whole file if unsupported."""
    try:
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    return
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, min(end, size)
            off = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        yield 0, size


def _copy_in(vol: Volume, ino: int, fd: int, size: int, cs: int, progress) -> int:
    """Copy the data regions of ``fd`` into file ``ino``; returns bytes copied."""
    block = max(cs, _COPY_BLOCK // cs * cs)
    copied = 0
    for start, end in _data_regions(fd, size):
        off = start
        while off < end:
            # align pieces to chunk boundaries so whole chunks are stored at once
            n = min(end - off, block - (off % cs))
            data = os.pread(fd, n, off)
            if not data:
                break
            vol.write(ino, off, data)
            off += len(data)
            copied += len(data)
            if progress:
                progress(len(data))
    return copied


def _copy_xattrs_in(vol: Volume, ino: int, target: int | bytes, shown: bytes,
                    report: TransferReport) -> None:
    """Copy the xattrs of ``target`` (an open fd, or a path whose last component is
    not followed) to inode ``ino``."""
    follow = isinstance(target, int)  # a descriptor is the file itself
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            report.warnings.append(f"{_p(shown)}: cannot list xattrs: {exc.strerror}")
        return
    for name in names:
        try:
            value = os.getxattr(target, name, follow_symlinks=follow)
            vol.setxattr(ino, os.fsencode(name), value, 0)
        except OSError as exc:
            report.warnings.append(f"{_p(shown)}: xattr {name} not imported: {exc.strerror}")
    # An ACL the source lacks may have come from a default ACL here: drop it.
    for extra in set(acl.NAMES).intersection(vol.listxattr(ino)).difference(map(os.fsencode, names)):
        vol.removexattr(ino, extra)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)


class _Importer:
    """One import: walks the source by held directory descriptors (see cas/hostdirs.py)."""

    def __init__(self, store, vol: Volume, report: TransferReport, progress, commit_every: int):
        self.store = store
        self.vol = vol
        self.report = report
        self.progress = progress
        self.commit_every = commit_every
        self.cs = store.chunk_size
        self.links: dict[tuple[int, int], int] = {}
        self.pending = 0

    def run(self, top: HostDir, top_ino: int) -> None:
        # depth first, holding one descriptor per level; directory attributes
        # are set after their children (post-order)
        stack: list[list] = [[top.fd, top_ino, os.fstat(top.fd), top.path, None, False]]
        try:
            while stack:
                frame = stack[-1]
                fd, ino, st, shown, subdirs, owned = frame
                if subdirs is None:
                    subdirs = frame[4] = self._fill(fd, ino, shown)
                    subdirs.reverse()
                if subdirs:
                    name, sub_ino, cst = subdirs.pop()
                    where = os.path.join(shown, name)
                    try:
                        sfd = open_dir_at(fd, name, what=where)
                    except (FsError, FileNotFoundError) as exc:
                        self.report.warnings.append(f"{_p(where)}: not imported: {exc.strerror}")
                        continue
                    if not _same(os.fstat(sfd), cst):
                        os.close(sfd)
                        self.report.warnings.append(f"{_p(where)}: replaced during import; skipped")
                        continue
                    stack.append([sfd, sub_ino, cst, where, None, True])
                    continue
                stack.pop()
                try:
                    _copy_xattrs_in(self.vol, ino, fd, shown, self.report)
                    self.vol.setattr(ino, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                                     atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns,
                                     ctime_ns=st.st_ctime_ns)
                finally:
                    if owned:
                        os.close(fd)
        finally:
            for frame in stack:
                if frame[5]:
                    os.close(frame[0])

    def _fill(self, dfd: int, ino: int, shown: bytes) -> list:
        """Import the entries of one directory; returns its subdirectories to descend into."""
        vol, report = self.vol, self.report
        names = sorted(os.fsencode(n) for n in os.listdir(dfd))
        subdirs = []
        for name in names:
            where = os.path.join(shown, name)
            try:
                cst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                report.warnings.append(f"{_p(where)}: vanished during import")
                continue
            mode = cst.st_mode
            fmt = stat.S_IFMT(mode)
            if fmt != stat.S_IFDIR and cst.st_nlink > 1:
                first = self.links.get((cst.st_dev, cst.st_ino))
                if first is not None:
                    vol.link(first, ino, name)
                    report.hardlinks += 1
                    continue
            if fmt == stat.S_IFDIR:
                try:
                    attr = vol.mkdir(ino, name, mode & 0o7777, cst.st_uid, cst.st_gid)
                except FsError as exc:
                    if exc.errno != errno.EEXIST:
                        raise
                    attr = vol.lookup(ino, name)
                    if not stat.S_ISDIR(attr.mode):
                        raise
                report.directories += 1
                subdirs.append((name, attr.ino, cst))
                self._count()
                continue
            if fmt == stat.S_IFREG:
                try:
                    fd = _open_source(dfd, name)
                except OSError as exc:
                    report.warnings.append(f"{_p(where)}: not imported: {exc.strerror}")
                    continue
                try:
                    if not _same(os.fstat(fd), cst):
                        report.warnings.append(f"{_p(where)}: replaced during import; skipped")
                        continue
                    attr = vol.create(ino, name, mode & 0o7777, cst.st_uid, cst.st_gid)
                    n = _copy_in(vol, attr.ino, fd, cst.st_size, self.cs, self.progress)
                    if vol.getattr(attr.ino).size != cst.st_size:
                        vol.setattr(attr.ino, size=cst.st_size)  # trailing hole
                    if self.progress and cst.st_size > n:
                        self.progress(cst.st_size - n)
                    report.files += 1
                    report.bytes += n
                    _copy_xattrs_in(vol, attr.ino, fd, where, report)
                finally:
                    os.close(fd)
            else:
                if fmt == stat.S_IFLNK:
                    attr = vol.symlink(ino, name, os.readlink(name, dir_fd=dfd), cst.st_uid, cst.st_gid)
                    report.symlinks += 1
                else:
                    attr = vol.mknod(ino, name, mode, cst.st_rdev, cst.st_uid, cst.st_gid)
                    report.specials += 1
                _copy_xattrs_in(vol, attr.ino, magic_path(dfd, name), where, report)
            if cst.st_nlink > 1:
                self.links[(cst.st_dev, cst.st_ino)] = attr.ino
            vol.setattr(attr.ino, mode=None if fmt == stat.S_IFLNK else mode & 0o7777,
                        uid=cst.st_uid, gid=cst.st_gid, atime_ns=cst.st_atime_ns,
                        mtime_ns=cst.st_mtime_ns, ctime_ns=cst.st_ctime_ns)
            self._count()
        return subdirs

    def _count(self) -> None:
        self.pending += 1
        if self.pending >= self.commit_every:
            self.store.commit()
            self.pending = 0


def import_tree(store, src: str | bytes, dataset: str, path: bytes | str = b"/", *,
                create_dataset: bool = True, progress: Progress | None = None,
                commit_every: int = 5000, roots=None) -> TransferReport:
    """Load the tree under ``src`` into ``dataset`` at ``path`` (created as needed).

    The contents of ``src`` land inside ``path``, which takes ``src``'s own mode,
    owner, times and xattrs. Existing directories are merged; any other existing
    name is EEXIST. Hard links are kept within the imported tree. ``src`` is
    opened once and walked by held descriptors, never following a symlink
    (cas/hostdirs.py); with ``roots`` it must lie inside one of them.
    """
    t0 = time.monotonic()
    report = TransferReport()
    path = os.fsencode(path)
    top = open_host_dir(src, roots=roots)
    try:
        if dataset not in store.datasets():
            if not create_dataset:
                raise FsError(errno.ENOENT, f"no dataset {dataset!r}")
            store.create_dataset(dataset)
        vol = store.volume(dataset)
        top_ino = _ensure_dir(vol, path)
        _Importer(store, vol, report, progress, commit_every).run(top, top_ino)
    finally:
        top.close()
    store.commit()
    report.seconds = time.monotonic() - t0
    log.info("import finished", src=_p(top.path), dataset=dataset, files=report.files,
             directories=report.directories, bytes=report.bytes, seconds=round(report.seconds, 3))
    return report


# ------------------------------------------------------------------- export

def open_view(store, dataset: str, snapshot: str | None) -> Volume:
    """The live volume of ``dataset`` or the read-only view of one of its snapshots."""
    if snapshot is None:
        return store.volume(dataset)
    if not hasattr(store, "snapshot_volume"):
        raise FsError(errno.EOPNOTSUPP, "this store has no snapshot support yet")
    return store.snapshot_volume(dataset, snapshot)


def _is_zero(data) -> bool:
    return data.count(0) == len(data)


def _write_nonzero(fd: int, data: bytes, off: int, block: int = 4096) -> int:
    """pwrite the runs of non-zero ``block``s of ``data``; zero blocks stay holes."""
    written = 0
    zero = bytes(block)
    run = -1
    n = len(data)
    for lo in range(0, n + block, block):
        is_zero = lo >= n or data[lo:lo + block] == zero[:min(block, n - lo)]
        if is_zero and run >= 0:
            written += os.pwrite(fd, data[run:lo], off + run)
            run = -1
        elif not is_zero and run < 0:
            run = lo
    return written


def _copy_out(vol: Volume, ino: int, fd: int, size: int, cs: int, progress) -> int:
    """Write the non-zero chunks of file ``ino`` to ``fd``; holes stay holes."""
    block = max(cs, _COPY_BLOCK // cs * cs)
    written = 0
    off = 0
    while off < size:
        data = vol.read(ino, off, min(block, size - off))
        if not data:
            break
        for lo in range(0, len(data), cs):
            piece = data[lo:lo + cs] if len(data) > cs else data
            if not _is_zero(piece):
                written += _write_nonzero(fd, piece, off + lo)
        off += len(data)
        if progress:
            progress(len(data))
    os.ftruncate(fd, size)
    return written


class _Exporter:
    """One export: everything is created relative to held directory descriptors
    (cas/hostdirs.py), so no name on the host is resolved twice."""

    def __init__(self, vol: Volume, cs: int, report: TransferReport, progress,
                 keep_owner: bool):
        self.vol = vol
        self.cs = cs
        self.report = report
        self.progress = progress
        self.keep_owner = keep_owner
        self.links: dict[int, tuple[bytes, ...]] = {}  # ino -> path of its first link, from the top
        self.top_fd = -1

    def mode_of(self, attr) -> int:
        """The mode to give: setuid and setgid only along with the stored owner."""
        mode = stat.S_IMODE(attr.mode)
        return mode if self.keep_owner else mode & ~(stat.S_ISUID | stat.S_ISGID)

    def run(self, top: HostDir, top_ino: int) -> None:
        self.top_fd = top.fd
        # frames: [fd, ino, path parts from the top, subdirectories left, owned]
        stack: list[list] = [[top.fd, top_ino, (), None, False]]
        try:
            while stack:
                frame = stack[-1]
                fd, ino, parts, subdirs, owned = frame
                if subdirs is None:
                    subdirs = frame[3] = self._fill(fd, ino, parts)
                    subdirs.reverse()
                if subdirs:
                    name, sub_ino = subdirs.pop()
                    sfd = open_dir_at(fd, name)
                    stack.append([sfd, sub_ino, parts + (name,), None, True])
                    continue
                stack.pop()
                try:
                    # a directory the export made takes its attributes last; one
                    # that existed before (the destination itself) keeps its own
                    if owned or top.created:
                        self._attrs_fd(fd, ino, self.vol.getattr(ino), parts)
                finally:
                    if owned:
                        os.close(fd)
        finally:
            for frame in stack:
                if frame[4]:
                    os.close(frame[0])

    def _fill(self, dfd: int, ino: int, parts: tuple[bytes, ...]) -> list:
        """Write out the entries of one directory; returns its subdirectories."""
        vol, report = self.vol, self.report
        subdirs = []
        cookie = 0
        while True:
            ents = vol.readdir(ino, cookie, 1024)
            if not ents:
                break
            cookie = ents[-1].cookie
            for ent in ents:
                name = ent.name
                attr = vol.getattr(ent.ino)
                fmt = stat.S_IFMT(attr.mode)
                if fmt != stat.S_IFDIR and attr.nlink > 1:
                    first = self.links.get(attr.ino)
                    if first is not None:
                        self._hardlink(first, dfd, name)
                        report.hardlinks += 1
                        continue
                    self.links[attr.ino] = parts + (name,)
                if fmt == stat.S_IFDIR:
                    os.mkdir(name, 0o700, dir_fd=dfd)
                    report.directories += 1
                    subdirs.append((name, ent.ino))
                    continue
                if fmt == stat.S_IFREG:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                    try:
                        report.bytes += _copy_out(vol, attr.ino, fd, attr.size, self.cs, self.progress)
                        self._attrs_fd(fd, attr.ino, attr, parts + (name,))
                    finally:
                        os.close(fd)
                    report.files += 1
                elif fmt == stat.S_IFLNK:
                    os.symlink(vol.readlink(attr.ino), name, dir_fd=dfd)
                    self._attrs_symlink(dfd, name, attr, parts + (name,))
                    report.symlinks += 1
                else:
                    if fmt == stat.S_IFIFO:
                        os.mkfifo(name, 0o600, dir_fd=dfd)
                    else:  # sockets and devices: mknod makes all three on Linux
                        os.mknod(name, fmt | 0o600, attr.rdev, dir_fd=dfd)
                    # a descriptor that only names the node (opening a fifo or a
                    # device would block or act on it)
                    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                    try:
                        if stat.S_IFMT(os.fstat(pfd).st_mode) != fmt:
                            raise FsError(errno.EEXIST, f"{_p(b'/'.join(parts + (name,)))}: "
                                          "replaced during export")
                        self._attrs_fd(magic_path(pfd), attr.ino, attr, parts + (name,))
                    finally:
                        os.close(pfd)
                    report.specials += 1
        return subdirs

    def _hardlink(self, first: tuple[bytes, ...], dfd: int, name: bytes) -> None:
        """Link ``name`` in ``dfd`` to the file first exported at ``first`` (below the top)."""
        opened: list[int] = []
        try:
            parent = self.top_fd
            for part in first[:-1]:
                parent = open_dir_at(parent, part)
                opened.append(parent)
            os.link(first[-1], name, src_dir_fd=parent, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            for fd in opened:
                os.close(fd)

    def _xattrs(self, target, ino: int, parts, follow: bool = True) -> None:
        names = self.vol.listxattr(ino)
        for xname in names:
            try:
                os.setxattr(target, xname, self.vol.getxattr(ino, xname), follow_symlinks=follow)
            except OSError as exc:
                self.report.warnings.append(
                    f"{_p(b'/'.join(parts) or b'.')}: xattr {_p(xname)} not exported: {exc.strerror}")
        # An ACL the source lacks may have come from a default ACL on the host
        # directory: drop it (POSIX ACLs exported like any xattr otherwise).
        for extra in set(acl.NAMES).difference(names):
            try:
                os.removexattr(target, extra, follow_symlinks=follow)
            except OSError:
                pass  # absent, or no ACLs there (symlinks, filesystems without them)

    def _attrs_fd(self, target: int | bytes, ino: int, attr, parts) -> None:
        """xattrs, owner, mode, then times (in that order: chown clears setuid),
        on an open descriptor or a /proc/self/fd path."""
        self._xattrs(target, ino, parts)
        if self.keep_owner:
            os.chown(target, attr.uid, attr.gid)
        os.chmod(target, self.mode_of(attr))
        os.utime(target, ns=(attr.atime_ns, attr.mtime_ns))

    def _attrs_symlink(self, dfd: int, name: bytes, attr, parts) -> None:
        self._xattrs(magic_path(dfd, name), attr.ino, parts, follow=False)
        if self.keep_owner:
            os.chown(name, attr.uid, attr.gid, dir_fd=dfd, follow_symlinks=False)
        os.utime(name, ns=(attr.atime_ns, attr.mtime_ns), dir_fd=dfd, follow_symlinks=False)


def export_tree(store, dataset: str, dest: str | bytes, *, snapshot: str | None = None,
                path: bytes | str = b"/", progress: Progress | None = None,
                preserve_owner: bool = True, roots=None) -> TransferReport:
    """Write the tree at ``path`` of ``dataset`` (or ``dataset@snapshot``) into ``dest``.

    ``dest`` is created if missing and then takes the exported directory's
    attributes; a ``dest`` that existed keeps its own mode and owner (the
    export sets none of its attributes).
    Existing names inside it are EEXIST. ``preserve_owner`` restores owners,
    and with them setuid and setgid bits, when running as root; otherwise
    files belong to the caller and no setuid or setgid bit is set. ``dest``
    is opened once and held (cas/hostdirs.py); with ``roots`` it must lie
    inside one of them.
    """
    t0 = time.monotonic()
    report = TransferReport()
    vol = open_view(store, dataset, snapshot)
    top = vol.resolve(os.fsencode(path))
    if not stat.S_ISDIR(top.mode):
        raise FsError(errno.ENOTDIR, f"{_p(os.fsencode(path))} is not a directory")
    keep_owner = preserve_owner and os.geteuid() == 0
    hd = open_host_dir(dest, roots=roots, create=True)
    try:
        _Exporter(vol, store.chunk_size, report, progress, keep_owner).run(hd, top.ino)
    finally:
        hd.close()
    report.seconds = time.monotonic() - t0
    log.info("export finished", dataset=dataset, snapshot=snapshot, dest=_p(hd.path),
             files=report.files, bytes=report.bytes, seconds=round(report.seconds, 3))
    return report


def export_size(store, dataset: str, snapshot: str | None = None, path: bytes | str = b"/") -> int:
    """Apparent bytes of the regular files under ``path`` (hard links once), for progress."""
    vol = open_view(store, dataset, snapshot)
    total = 0
    seen: set[int] = set()
    todo = [vol.resolve(os.fsencode(path)).ino]
    while todo:
        ino = todo.pop()
        cookie = 0
        while True:
            ents = vol.readdir(ino, cookie, 1024)
            if not ents:
                break
            cookie = ents[-1].cookie
            for ent in ents:
                if stat.S_ISDIR(ent.mode):
                    todo.append(ent.ino)
                elif stat.S_ISREG(ent.mode) and ent.ino not in seen:
                    seen.add(ent.ino)
                    total += vol.getattr(ent.ino).size
    return total
