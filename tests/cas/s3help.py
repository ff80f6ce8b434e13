"""Looking into a test bucket directly (obstore), beside the store's own view."""

import obstore
from obstore.store import S3Store

from cas import S3Settings


def bucket(name: str, settings: S3Settings | None = None) -> S3Store:
    """The whole bucket ``name`` (no prefix), with the settings' endpoint and credentials."""
    return S3Store(name, **(settings or S3Settings.resolve()).obstore_options())


def object_keys(store: S3Store, prefix: str | None = None) -> list[str]:
    """Every key under ``prefix``."""
    return [m["path"] for batch in obstore.list(store, prefix) for m in batch]


def chunk_keys(store: S3Store, prefix: str) -> list[str]:
    """The chunk objects (``PREFIX/ab/<64 hex>``) under ``prefix``."""
    return [k for k in object_keys(store, prefix) if len(k.rsplit("/", 1)[-1]) == 64]
