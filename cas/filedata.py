"""Per-inode chunk buffers: how reads, writes and truncates map onto chunks.

Each regular file has ``extents`` (chunk index -> (hash, length, ver)), the
stored chunks, and ``bufs`` (chunk index -> Buf), dirty content that
overrides the extent. A missing extent or a region past a chunk's length
reads as zeros. Invariant: no extent or buffer holds bytes at or beyond the
file size, so extending a file never exposes stale data.

These helpers run under the store lock; they never touch the catalog.
"""

from __future__ import annotations

from .records import EMPTY, Buf, Inode


def plan_read(node: Inode, off: int, size: int, cs: int) -> list:
    """Describe ``[off, off+size)`` as pieces: bytes, or (hash, lo, hi, whole) to fetch.

    ``whole`` is true when the piece is the entire stored chunk.

    The caller has clamped the range to the file size. Buffer slices are
    copied here so the plan stays valid after the lock is released.
    """
    pieces: list = []
    end = off + size
    idx = off // cs
    exts = node.extents
    bufs = node.bufs
    while off < end:
        base = idx * cs
        lo = off - base
        hi = min(end - base, cs)
        b = bufs.get(idx)
        if b is not None:
            piece = bytes(memoryview(b.data)[lo:hi])
            if len(piece) < hi - lo:
                piece += bytes(hi - lo - len(piece))
            pieces.append(piece)
        else:
            ext = exts.get(idx)
            if ext is None:
                pieces.append(bytes(hi - lo))
            else:
                pieces.append((ext[0], lo, hi, lo == 0 and hi == ext[1]))
        off = base + hi
        idx += 1
    return pieces


def following_chunks(node: Inode, end: int, cs: int, count: int) -> list[str]:
    """Hashes of the stored chunks among the ``count`` chunks after offset ``end``."""
    first = (end + cs - 1) // cs
    exts = node.extents
    out = []
    for idx in range(first, min(first + count, (node.size + cs - 1) // cs)):
        if idx not in node.bufs:
            ext = exts.get(idx)
            if ext is not None:
                out.append(ext[0])
    return out


def zero_fill(data: bytes, lo: int, hi: int) -> bytes:
    piece = data[lo:hi]
    if len(piece) < hi - lo:
        piece += bytes(hi - lo - len(piece))
    return piece


def write_buffers(node: Inode, off: int, data, cs: int, load_chunk) -> tuple[int, list]:
    """Apply a write. Partial chunks go into buffers; whole chunks are returned.

    Returns (change in buffered bytes, [(idx, bytes, ver)] of whole chunks the
    caller stores and installs with :func:`install`). ``load_chunk(hash)``
    reads a stored chunk when a partial write lands on it.
    """
    mv = memoryview(data)
    n = len(mv)
    pos = 0
    delta = 0
    whole: list = []
    bufs = node.bufs
    while pos < n:
        o = off + pos
        idx = o // cs
        lo = o - idx * cs
        take = min(cs - lo, n - pos)
        node.wseq += 1
        if take == cs:
            whole.append((idx, bytes(mv[pos:pos + take]), node.wseq))
        else:
            b = bufs.get(idx)
            if b is None:
                ext = node.extents.get(idx)
                base = bytearray(load_chunk(ext[0])[:ext[1]]) if ext is not None else bytearray()
                if bufs is EMPTY:
                    bufs = node.bufs = {}
                b = bufs[idx] = Buf(base, 0)
                delta += len(base)
            d = b.writable()
            old = len(d)
            if old < lo:
                d.extend(bytes(lo - old))
            d[lo:lo + take] = mv[pos:pos + take]
            delta += len(d) - old
            b.ver = node.wseq
        pos += take
    return delta, whole


def fits_in_buffers(node: Inode, off: int, n: int, cs: int) -> bool:
    """True if writing ``n`` bytes at ``off`` only touches buffers (no chunk to store or load)."""
    end = off + n
    idx = off // cs
    while idx * cs < end:
        lo = max(off, idx * cs)
        hi = min(end, (idx + 1) * cs)
        if hi - lo == cs:
            return False  # a whole chunk: stored at once by write_buffers
        if idx not in node.bufs and idx in node.extents:
            return False  # a partial write over a stored chunk loads it first
        idx += 1
    return True


def install(node: Inode, idx: int, h: str | None, length: int, ver: int) -> tuple[bool, str | None, int]:
    """Record that chunk ``idx`` at version ``ver`` is stored as ``h`` (None: all zeros).

    Returns (installed, replaced hash or None, change in buffered bytes).
    Nothing happens if a newer version is already stored, or if a truncate
    after version ``ver`` cut chunk ``idx`` (the chunk holds bytes from
    before the cut, which must not come back).
    """
    for cver, first in node.cuts:
        if cver > ver:
            if idx >= first:
                return False, None, 0
            break
    exts = node.extents
    cur = exts.get(idx)
    if cur is not None and cur[2] >= ver:
        return False, None, 0
    delta = 0
    b = node.bufs.get(idx)
    if b is not None and b.ver <= ver:
        del node.bufs[idx]
        delta = -len(b.data)
    if h is None:
        if cur is not None:
            del exts[idx]
    else:
        exts[idx] = (h, length, ver)
    return True, (cur[0] if cur is not None else None), delta


def truncate(node: Inode, new: int, cs: int, load_chunk) -> tuple[list[int], list[str], int]:
    """Cut the file's chunks to ``new`` bytes (extending needs nothing).

    Returns (chunk indices whose extent changed, hashes no longer used, change in
    buffered bytes).
    """
    changed: list[int] = []
    dropped: list[str] = []
    delta = 0
    if new >= node.size:
        return changed, dropped, delta
    keep = (new + cs - 1) // cs
    # Chunks from idx new // cs on lose bytes here. A chunk version older than
    # this cut may still be in flight (a commit or flush stores buffers outside
    # the lock); install must reject it. Keep (version, first index) pairs with
    # both strictly increasing: a later cut at a lower index supersedes earlier ones.
    node.wseq += 1
    first = new // cs
    cuts = node.cuts
    if not cuts:
        cuts = node.cuts = []
    while cuts and cuts[-1][1] >= first:
        cuts.pop()
    cuts.append((node.wseq, first))
    for idx in [i for i in node.extents if i >= keep]:
        dropped.append(node.extents.pop(idx)[0])
        changed.append(idx)
    for idx in [i for i in node.bufs if i >= keep]:
        delta -= len(node.bufs.pop(idx).data)
    rem = new - (keep - 1) * cs
    if keep and rem < cs:
        last = keep - 1
        node.wseq += 1
        b = node.bufs.get(last)
        if b is not None:
            if len(b.data) > rem:
                delta -= len(b.data) - rem
                del b.writable()[rem:]
            b.ver = node.wseq
        else:
            ext = node.extents.get(last)
            if ext is not None and ext[1] > rem:
                content = bytearray(load_chunk(ext[0])[:rem])
                if node.bufs is EMPTY:
                    node.bufs = {}
                node.bufs[last] = Buf(content, node.wseq)
                delta += len(content)
    return changed, dropped, delta


def is_zero(data) -> bool:
    """True if ``data`` is all zero bytes (a hole: nothing to store)."""
    n = len(data)
    if n and (data[0] or data[n - 1]):
        return False  # most content is rejected without a scan
    return data.count(0) == n
