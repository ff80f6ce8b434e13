"""The object storage going away (SeaweedFS killed) and coming back (restarted on the same ports)."""

import errno
import os
import time
import uuid

import obstore
import pytest
import structlog
from obstore.store import S3Store

from cas import FsError, S3Settings, Store
from cas.gc import collect
from tests.servers import start_seaweedfs

MiB = 1 << 20


@pytest.fixture
def weed(tmp_path):
    server = start_seaweedfs(tmp_path / "weed")
    yield server
    server.stop()


def _settings(server) -> S3Settings:
    env = server.env()
    return S3Settings(endpoint=env["AWS_ENDPOINT_URL"], region=env["AWS_REGION"],
                      access_key_id=env["AWS_ACCESS_KEY_ID"],
                      secret_access_key=env["AWS_SECRET_ACCESS_KEY"], allow_http=True,
                      max_retries=3, retry_timeout=2.0, timeout=3.0, connect_timeout=1.0,
                      init_backoff=0.05, max_backoff=0.5)


def _wait_until_writable(settings: S3Settings, timeout: float = 60) -> None:
    """Return once the restarted server accepts uploads again.

    ``start()`` returns when the S3 gateway answers; after a kill -9 the
    storage behind it may take a few more seconds (longer on a loaded machine)
    before writes succeed. Only then is the bucket "back".
    """
    probe = S3Store("probe-writable", **settings.obstore_options())
    deadline = time.monotonic() + timeout
    while True:
        try:
            obstore.put(probe, "probe", b"x")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_bucket_goes_away_and_comes_back(weed, tmp_path):
    settings = _settings(weed)
    secret = settings.secret_access_key.get_secret_value()
    path = str(tmp_path / "s")
    url = f"s3://b-{uuid.uuid4().hex[:12]}/chunks"
    store = Store.open(path, create=True, chunks=url, s3=settings, chunk_cache_bytes=256 << 10)
    store.create_dataset("m")
    vol = store.volume("m")
    acked = {}
    for name, size in ((b"a", 2 * MiB + 7), (b"b", 5000)):
        data = os.urandom(size)
        f = vol.create(vol.root, name, 0o644, 0, 0)
        vol.write(f.ino, 0, data)
        vol.fsync(f.ino)
        acked[name] = (f.ino, data)
    later = os.urandom(300_000)
    with structlog.testing.capture_logs() as logs:
        weed.kill()
        vol.unlink(vol.root, b"b")
        store.commit()            # metadata only: durable; b's chunk is left to the pool's gc
        del acked[b"b"]
        c = vol.create(vol.root, b"c", 0o644, 0, 0)
        vol.write(c.ino, 0, later)                   # buffered in memory: no upload yet
        t0 = time.monotonic()
        with pytest.raises(FsError) as ei:
            vol.fsync(c.ino)
        assert ei.value.errno == errno.EIO
        assert time.monotonic() - t0 < 20            # the retries are bounded
        store.chunks.drop_cache()
        with pytest.raises(FsError) as ei:           # an uncached chunk cannot be read
            vol.read(acked[b"a"][0], 0, 10)
        assert ei.value.errno == errno.EIO
        with pytest.raises(FsError):
            store.commit()                           # the change stays queued
    events = [e["event"] for e in logs]
    assert any(e.startswith("chunk upload failed: object storage unreachable") for e in events)
    assert any(e.startswith("chunk download failed: object storage unreachable") for e in events)
    assert secret not in repr(logs) and settings.access_key_id not in repr(logs)

    weed.start()                                     # same ports, same data
    _wait_until_writable(settings)
    store.commit()                                   # what the server's commit loop does next
    assert store.last_commit_error is None
    vol.fsync(c.ino)
    acked[b"c"] = (c.ino, later)
    for ino, data in acked.values():
        assert vol.read(ino, 0, len(data) + 1) == data
    assert collect(store, grace=0).chunks_freed == 1         # b's chunk
    store.close()
    with Store.open(path, s3=settings) as store:
        store.chunks.drop_cache()
        vol = store.volume("m")
        for name, (_, data) in acked.items():
            ino = vol.lookup(vol.root, name).ino
            assert vol.read(ino, 0, len(data) + 1) == data
        assert store.check() == []
