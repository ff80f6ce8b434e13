"""A set of closed integer intervals with O(log n) insert, remove and overlap search.

A treap (a binary search tree kept balanced by random priorities) ordered by
(start, serial), each node augmented with the largest end in its subtree, as
in the interval trees of CLRS. :meth:`IntervalSet.overlapping` yields the
intervals meeting a range lazily, in order of start, so a caller looking for
the first one that matters stops early: finding one costs O(log n), and each
further one O(log n) more, whatever the number of intervals held.
"""

from __future__ import annotations

import random
from typing import Generic, Iterator, Protocol, TypeVar


class Interval(Protocol):
    """What an :class:`IntervalSet` holds: ``start <= end``, both inclusive, and a unique serial."""

    start: int
    end: int
    serial: int


T = TypeVar("T", bound=Interval)


class _Node(Generic[T]):
    __slots__ = ("item", "key", "prio", "max_end", "left", "right")

    def __init__(self, item: T, prio: float):
        self.item = item
        self.key = (item.start, item.serial)
        self.prio = prio
        self.max_end = item.end
        self.left: _Node[T] | None = None
        self.right: _Node[T] | None = None

    def update(self) -> None:
        m = self.item.end
        if self.left is not None and self.left.max_end > m:
            m = self.left.max_end
        if self.right is not None and self.right.max_end > m:
            m = self.right.max_end
        self.max_end = m


def _split(node, key):
    """(nodes with key < ``key``, nodes with key >= ``key``)."""
    if node is None:
        return None, None
    if node.key < key:
        node.right, right = _split(node.right, key)
        node.update()
        return node, right
    left, node.left = _split(node.left, key)
    node.update()
    return left, node


def _merge(left, right):
    """Join two treaps, every key of ``left`` below every key of ``right``."""
    if left is None:
        return right
    if right is None:
        return left
    if left.prio > right.prio:
        left.right = _merge(left.right, right)
        left.update()
        return left
    right.left = _merge(left, right.left)
    right.update()
    return right


class IntervalSet(Generic[T]):
    """Intervals (objects with ``start``, ``end`` and ``serial``), searchable by overlap."""

    def __init__(self) -> None:
        self._root: _Node[T] | None = None
        self._len = 0
        self._random = random.random

    def __len__(self) -> int:
        return self._len

    def add(self, item: T) -> None:
        """Insert ``item``; its (start, serial) must not be in the set already."""
        node = _Node(item, self._random())
        left, right = _split(self._root, node.key)
        self._root = _merge(_merge(left, node), right)
        self._len += 1

    def remove(self, item: T) -> None:
        """Remove ``item`` (KeyError if it is not held)."""
        key = (item.start, item.serial)
        left, rest = _split(self._root, key)
        middle, right = _split(rest, (item.start, item.serial + 1))
        if middle is None or middle.item is not item:
            self._root = _merge(_merge(left, middle), right)
            raise KeyError(key)
        self._root = _merge(left, right)
        self._len -= 1

    def overlapping(self, start: int, end: int) -> Iterator[T]:
        """The intervals meeting [start, end], by increasing start, lazily."""
        stack: list[_Node[T]] = []
        node = self._root
        while stack or node is not None:
            # Go down-left as far as a subtree can still reach ``start``.
            while node is not None and node.max_end >= start:
                stack.append(node)
                node = node.left
            if not stack:
                return
            node = stack.pop()
            if node.key[0] > end:
                return  # this and everything after it starts past the range
            if node.item.end >= start:
                yield node.item
            node = node.right

    def __iter__(self) -> Iterator[T]:
        """Every interval, by increasing start."""
        stack: list[_Node[T]] = []
        node = self._root
        while stack or node is not None:
            while node is not None:
                stack.append(node)
                node = node.left
            node = stack.pop()
            yield node.item
            node = node.right
