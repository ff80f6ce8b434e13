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
