"""Import a directory tree into a dataset and export a dataset (or snapshot) back out.

Both go through the Volume API, so the usual machinery applies: whole chunks
are hashed and deduplicated as they are written, partial chunks are buffered,
and the metadata reaches DuckDB in group commits (one every
``commit_every`` objects, not one per file).

What round-trips: file types (regular, directory, symlink, hard links, fifo,
socket, character and block devices), mode bits including setuid/setgid/
sticky, owners, atime/mtime (ctime cannot be set on export), xattrs in every
namespace the store accepts (user., trusted., security., system.), and
sparse holes (import reads only the data regions found with SEEK_DATA and
SEEK_HOLE; export writes only non-zero chunks and leaves holes elsewhere;
an all-zero chunk is a hole in the store, so it comes back as one).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable

import structlog

from .errors import FsError
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

def scan_size(src: str | bytes) -> int:
    """Apparent bytes of the regular files under ``src`` (hard links once), for progress."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(os.fsencode(src)):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_size
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


def _open_source(path: bytes) -> int:
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
    try:
        return os.open(path, flags)
    except PermissionError:  # O_NOATIME needs ownership or CAP_FOWNER
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)


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


def _copy_xattrs_in(vol: Volume, ino: int, path: bytes, report: TransferReport) -> None:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            report.warnings.append(f"{_p(path)}: cannot list xattrs: {exc.strerror}")
        return
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
            vol.setxattr(ino, os.fsencode(name), value, 0)
        except OSError as exc:
            report.warnings.append(f"{_p(path)}: xattr {name} not imported: {exc.strerror}")


def import_tree(store, src: str | bytes, dataset: str, path: bytes | str = b"/", *,
                create_dataset: bool = True, progress: Progress | None = None,
                commit_every: int = 5000) -> TransferReport:
    """Load the tree under ``src`` into ``dataset`` at ``path`` (created as needed).

    The contents of ``src`` land inside ``path``, which takes ``src``'s own mode,
    owner, times and xattrs. Existing directories are merged; any other existing
    name is EEXIST. Hard links are kept within the imported tree.
    """
    t0 = time.monotonic()
    report = TransferReport()
    src = os.fsencode(src)
    path = os.fsencode(path)
    st0 = os.stat(src)
    if not stat.S_ISDIR(st0.st_mode):
        raise FsError(errno.ENOTDIR, f"{_p(src)} is not a directory")
    if dataset not in store.datasets():
        if not create_dataset:
            raise FsError(errno.ENOENT, f"no dataset {dataset!r}")
        store.create_dataset(dataset)
    vol = store.volume(dataset)
    cs = store.chunk_size
    top = _ensure_dir(vol, path)
    links: dict[tuple[int, int], int] = {}
    pending = 0
    # post-order: directory attributes are set after their children
    stack: list[tuple[bool, bytes, int, os.stat_result]] = [(False, src, top, st0)]
    while stack:
        leave, spath, ino, st = stack.pop()
        if leave:
            _copy_xattrs_in(vol, ino, spath, report)
            vol.setattr(ino, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
                        atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)
            continue
        stack.append((True, spath, ino, st))
        with os.scandir(spath) as it:
            names = sorted(e.name for e in it)
        subdirs = []
        for name in names:
            p = os.path.join(spath, name)
            try:
                cst = os.lstat(p)
            except FileNotFoundError:
                report.warnings.append(f"{_p(p)}: vanished during import")
                continue
            mode = cst.st_mode
            fmt = stat.S_IFMT(mode)
            if fmt != stat.S_IFDIR and cst.st_nlink > 1:
                key = (cst.st_dev, cst.st_ino)
                first = links.get(key)
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
                subdirs.append((False, p, attr.ino, cst))
                pending += 1
                continue
            if fmt == stat.S_IFREG:
                attr = vol.create(ino, name, mode & 0o7777, cst.st_uid, cst.st_gid)
                fd = _open_source(p)
                try:
                    n = _copy_in(vol, attr.ino, fd, cst.st_size, cs, progress)
                finally:
                    os.close(fd)
                if vol.getattr(attr.ino).size != cst.st_size:
                    vol.setattr(attr.ino, size=cst.st_size)  # trailing hole
                if progress and cst.st_size > n:
                    progress(cst.st_size - n)
                report.files += 1
                report.bytes += n
            elif fmt == stat.S_IFLNK:
                attr = vol.symlink(ino, name, os.readlink(p), cst.st_uid, cst.st_gid)
                report.symlinks += 1
            else:
                attr = vol.mknod(ino, name, mode, cst.st_rdev, cst.st_uid, cst.st_gid)
                report.specials += 1
            if cst.st_nlink > 1:
                links[(cst.st_dev, cst.st_ino)] = attr.ino
            _copy_xattrs_in(vol, attr.ino, p, report)
            vol.setattr(attr.ino, mode=None if fmt == stat.S_IFLNK else mode & 0o7777,
                        uid=cst.st_uid, gid=cst.st_gid, atime_ns=cst.st_atime_ns,
                        mtime_ns=cst.st_mtime_ns, ctime_ns=cst.st_ctime_ns)
            pending += 1
            if pending >= commit_every:
                store.commit()
                pending = 0
        stack.extend(reversed(subdirs))
    store.commit()
    report.seconds = time.monotonic() - t0
    log.info("import finished", src=_p(src), dataset=dataset, files=report.files,
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


def _apply_attrs(vol: Volume, ino: int, path: bytes, attr, report: TransferReport) -> None:
    """xattrs, owner, mode, then times (in that order: chown clears setuid)."""
    is_link = stat.S_ISLNK(attr.mode)
    for name in vol.listxattr(ino):
        try:
            os.setxattr(path, name, vol.getxattr(ino, name), follow_symlinks=False)
        except OSError as exc:
            report.warnings.append(f"{_p(path)}: xattr {_p(name)} not exported: {exc.strerror}")
    os.chown(path, attr.uid, attr.gid, follow_symlinks=False)
    if not is_link:
        os.chmod(path, stat.S_IMODE(attr.mode))
    os.utime(path, ns=(attr.atime_ns, attr.mtime_ns), follow_symlinks=False)


def export_tree(store, dataset: str, dest: str | bytes, *, snapshot: str | None = None,
                path: bytes | str = b"/", progress: Progress | None = None) -> TransferReport:
    """Write the tree at ``path`` of ``dataset`` (or ``dataset@snapshot``) into ``dest``.

    ``dest`` is created if missing and takes the exported directory's attributes;
    existing names inside it are EEXIST.
    """
    t0 = time.monotonic()
    report = TransferReport()
    vol = open_view(store, dataset, snapshot)
    dest = os.fsencode(dest)
    top = vol.resolve(os.fsencode(path))
    if not stat.S_ISDIR(top.mode):
        raise FsError(errno.ENOTDIR, f"{_p(os.fsencode(path))} is not a directory")
    os.makedirs(dest, exist_ok=True)
    cs = store.chunk_size
    links: dict[int, bytes] = {}
    stack: list[tuple[bool, int, bytes]] = [(False, top.ino, dest)]
    while stack:
        leave, ino, dpath = stack.pop()
        if leave:
            _apply_attrs(vol, ino, dpath, vol.getattr(ino), report)
            continue
        stack.append((True, ino, dpath))
        subdirs = []
        cookie = 0
        while True:
            ents = vol.readdir(ino, cookie, 1024)
            if not ents:
                break
            cookie = ents[-1].cookie
            for ent in ents:
                p = os.path.join(dpath, ent.name)
                attr = vol.getattr(ent.ino)
                fmt = stat.S_IFMT(attr.mode)
                if fmt != stat.S_IFDIR and attr.nlink > 1:
                    first = links.get(attr.ino)
                    if first is not None:
                        os.link(first, p, follow_symlinks=False)
                        report.hardlinks += 1
                        continue
                    links[attr.ino] = p
                if fmt == stat.S_IFDIR:
                    os.mkdir(p, 0o700)
                    report.directories += 1
                    subdirs.append((False, ent.ino, p))
                    continue
                if fmt == stat.S_IFREG:
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                    try:
                        report.bytes += _copy_out(vol, attr.ino, fd, attr.size, cs, progress)
                    finally:
                        os.close(fd)
                    report.files += 1
                elif fmt == stat.S_IFLNK:
                    os.symlink(vol.readlink(attr.ino), p)
                    report.symlinks += 1
                elif fmt == stat.S_IFIFO:
                    os.mkfifo(p, 0o600)
                    report.specials += 1
                else:  # sockets and devices: mknod makes all three on Linux
                    os.mknod(p, fmt | 0o600, attr.rdev)
                    report.specials += 1
                _apply_attrs(vol, attr.ino, p, attr, report)
        stack.extend(reversed(subdirs))
    report.seconds = time.monotonic() - t0
    log.info("export finished", dataset=dataset, snapshot=snapshot, dest=_p(dest),
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
