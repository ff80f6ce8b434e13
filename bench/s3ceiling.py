"""The S3 client's own upload and download rates: the ceiling of an S3-backed store.

obstore's synchronous API from a pool of worker threads (what the chunk
backend does): ``put`` with ``mode="create"`` (If-None-Match: *, as chunk
uploads are put-if-absent) of distinct objects, then ``get`` of each of them.
No ninep code is involved, so a store cannot be faster than these figures at
the same object size.
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import obstore
from obstore.store import S3Store

from .servers import BenchError

THREADS = 8


@dataclass
class Rates:
    """One measure: PUT and GET throughput of ``count`` objects of ``size`` bytes."""

    size: int
    count: int
    put_MBps: float
    get_MBps: float

    @property
    def put_per_s(self) -> float:
        return self.put_MBps * 1e6 / self.size

    @property
    def get_per_s(self) -> float:
        return self.get_MBps * 1e6 / self.size


def measure(bucket: str, size: int, total: int, pool: memoryview, salt: int,
            threads: int = THREADS) -> Rates:
    """PUT then GET ``total`` bytes as objects of ``size`` bytes under a fresh prefix.

    Credentials and endpoint come from the AWS_* environment variables.
    Object i is a window of ``pool`` at an offset depending on i and ``salt``
    (distinct content, built before the clock starts).
    """
    count = max(total // size, threads)
    span = len(pool) - size
    if span <= 0:
        raise BenchError(f"content pool of {len(pool)} bytes is smaller than objects of {size}")
    store = S3Store(bucket, prefix=f"ceiling/{uuid.uuid4().hex[:12]}")
    bodies = [bytes(pool[o:o + size]) for o in
              ((i * 1_000_003 + salt * 7_919) % span for i in range(count))]
    keys = [f"o{i:07d}" for i in range(count)]

    def put(i: int) -> None:
        obstore.put(store, keys[i], bodies[i], mode="create")

    def get(i: int) -> int:
        return len(obstore.get(store, keys[i]).bytes())

    with ThreadPoolExecutor(threads) as ex:
        t0 = time.perf_counter()
        list(ex.map(put, range(count)))
        t_put = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = sum(ex.map(get, range(count)))
        t_get = time.perf_counter() - t0
    if got != count * size:
        raise BenchError(f"ceiling: read back {got} bytes of {count * size}")
    return Rates(size=size, count=count, put_MBps=count * size / t_put / 1e6,
                 get_MBps=count * size / t_get / 1e6)
