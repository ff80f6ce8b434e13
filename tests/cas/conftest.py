import pytest

from cas import Store


class Env:
    """A store in tmp_path with one dataset, reopenable."""

    def __init__(self, path, **kw):
        self.path = str(path)
        self.kw = kw
        self.store = Store.open(self.path, create=True, **kw)
        self.store.create_dataset("main")
        self.vol = self.store.volume("main")

    def reopen(self):
        self.store.close()
        self.store = Store.open(self.path, **self.kw)
        self.vol = self.store.volume("main")
        return self.vol

    def close(self):
        self.store.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path / "store")
    yield e
    e.close()


@pytest.fixture
def vol(env):
    return env.vol


@pytest.fixture
def s3_settings(s3_bucket):
    """Settings for the shared SeaweedFS (from the environment), with short retries."""
    from cas import S3Settings

    return S3Settings.resolve().model_copy(update={
        "retry_timeout": 3.0, "max_retries": 3, "timeout": 5.0, "connect_timeout": 2.0})


@pytest.fixture
def s3_env(tmp_path, s3_bucket, s3_settings):
    """A store whose chunks are in a fresh bucket (prefix ``store``), with one dataset."""
    e = Env(tmp_path / "store", chunks=f"s3://{s3_bucket}/store", s3=s3_settings,
            chunk_cache_bytes=64 << 20, pool_grace=0)
    yield e
    e.close()
