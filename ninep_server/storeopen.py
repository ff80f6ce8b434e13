"""Opening a store with its chunk backend, the same way for ``serve``, ``init`` and the admin commands.

A store's chunks live in its own ``chunks/`` directory or in an S3 bucket,
chosen when the store is created and recorded in its catalog. Connection
settings come from the standard AWS_* variables, which take precedence over
the configuration file's ``[s3]`` table; they are resolved here and handed to
:meth:`cas.Store.open`, and never logged or printed.
"""

from __future__ import annotations

import os

from cas import Store, StoreLockedError

from .config import ConfigError, ServerConfig

FORMAT_FILE = "FORMAT"


def is_store(path: str) -> bool:
    """Whether ``path`` already holds a ninep store."""
    return os.path.exists(os.path.join(path, FORMAT_FILE))


def open_options(config: ServerConfig | None = None, *, chunks: str | None = None,
                 chunk_size: int | None = None) -> dict:
    """Keyword arguments for :meth:`cas.Store.open` beyond the path.

    ``chunks`` (a command-line option) overrides ``[server] chunks``; it only
    chooses the backend of a new store, and an existing store that records
    another one is refused at open. S3 settings are resolved only when a
    bucket may be involved (a new S3 store, or file settings that an existing
    S3 store would need), so local stores never touch the S3 code.
    """
    config = config or ServerConfig()
    options: dict = {}
    chunks = chunks or config.chunks
    if chunks:
        options["chunks"] = chunks
    if chunk_size:
        options["chunk_size"] = chunk_size
    file_values = config.s3.file_values()
    if file_values:
        options["s3"] = resolve_s3(file_values)
    if config.chunk_memory is not None:
        options["chunk_memory_bytes"] = config.chunk_memory
    if config.metadata_memory is not None:
        options["cache_bytes"] = config.metadata_memory
    if config.s3.cache_size is not None:
        options["chunk_cache_bytes"] = config.s3.cache_size
    if config.s3.pool_refresh is not None:
        options["pool_refresh"] = config.s3.pool_refresh
    if config.s3.pool_grace is not None:
        options["pool_grace"] = config.s3.pool_grace
    return options


def resolve_s3(file_values: dict):
    """``S3Settings.resolve``; a bad value is a ConfigError naming the setting, never its value."""
    from cas.s3config import S3Settings

    try:
        return S3Settings.resolve(file_values)
    except ValueError as exc:  # pydantic's ValidationError: its text would quote the values
        fields = sorted({".".join(map(str, e["loc"])) for e in getattr(exc, "errors", lambda: [])()})
        raise ConfigError(f"invalid object-storage setting(s) {', '.join(fields) or '(unknown)'}: check the "
                          "AWS_* variables and the [s3] table of the configuration file") from None


def open_store(path: str, config: ServerConfig | None = None, *, create: bool = False,
               chunks: str | None = None, chunk_size: int | None = None, **kwargs) -> Store:
    """:meth:`cas.Store.open` with the chunk backend options of ``config`` and the command line."""
    return Store.open(path, create=create, **open_options(config, chunks=chunks, chunk_size=chunk_size), **kwargs)


def open_hint(exc: BaseException, options: dict) -> str:
    """What to check when opening a store failed on an I/O error that may come from object storage.

    Empty when the error already says what to check, or is not an I/O error
    (a backend mismatch, a bad format, a lock explain themselves).
    """
    text = str(exc)
    if not isinstance(exc, OSError) or isinstance(exc, StoreLockedError) or "check" in text:
        return ""
    if "s3://" not in text and "chunks" not in options and "s3" not in options:
        return ""
    return ("; for a store on object storage check AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP and the "
            "credentials AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the [s3] table of --config")
