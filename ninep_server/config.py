"""Server configuration: exports and limits, loaded from a TOML file.

Example ``ninep.toml``::

    [server]
    listen = ["tcp:127.0.0.1:5640", "unix:/run/ninep/ninep.sock"]  # when serve has no --listen
    max_connections = 256          # sessions past Tversion
    max_handshakes = 64            # connections still negotiating; a new one evicts the oldest
    handshake_timeout = 10         # seconds to complete Tversion, else the connection closes
    idle_timeout = 60              # seconds a connection may hold no fid before it closes
    max_fids_per_connection = 16384
    max_requests_per_connection = 64   # requests in flight; beyond, the server stops reading
    max_locks_per_connection = 4096    # byte-range locks held (ENOLCK beyond)
    max_lock_waits_per_connection = 32 # blocking Tlocks waiting (BLOCKED beyond; the client polls);
                                       # must be below max_requests_per_connection
    unix_socket_mode = "0600"
    commit_interval = 0.2          # seconds between group commits
    gc_interval = 3600             # seconds between background gc runs (0 = off)
    catalog_copy_interval = 3600   # S3 stores: seconds between catalog copies to the bucket, besides
                                   # one after every snapshot (0 = only after snapshots)
    catalog_copy_keep = 24         # catalog copies kept in the bucket (the newest)
    export_unlisted = true         # serve datasets not listed below with defaults
    snapdir_hidden = false         # list /.snapshots in the root (it is reachable either way)
    free_space_reserve = "64M"     # writes get ENOSPC below this much free space: "256M", "1G", "5%"
    chunk_memory = "256M"          # verified chunks kept in memory (re-reads are copies; 0: none)
    metadata_memory = "256M"       # inode records and rows kept in memory, per dataset in use
    chunks = "s3://bucket/prefix"  # a new store keeps its chunks in this bucket (default: local chunks/)

    [s3]                           # object storage; the AWS_* variables take precedence over these
    endpoint = "http://127.0.0.1:8333"   # AWS_ENDPOINT_URL (default: AWS)
    region = "us-east-1"                 # AWS_REGION
    access_key_id = "..."                # AWS_ACCESS_KEY_ID
    secret_access_key = "..."            # AWS_SECRET_ACCESS_KEY (keep the file mode 0600)
    allow_http = false                   # AWS_ALLOW_HTTP: true for a plain-http endpoint
    cache_size = "1G"                    # bound of the local chunk cache, STORE/chunk-cache/
    pool_refresh = 600                   # seconds between publications of the store's chunk set
    pool_grace = 3600                    # gc keeps unreferenced objects younger than this (s)

    [admin]
    socket = "/run/ninep/admin.sock"   # default: <store>/admin.sock, mode 0600
    listen = "tcp:127.0.0.1:5641"      # optional; needs a token
    token_file = "/etc/ninep/admin-token"
    transfer_roots = ["/srv/import"]   # TCP clients may import/export only here

    [exports.main]
    read_only = false
    squash = "none"                # "none" | "root" | "all"
    anon_uid = 65534
    anon_gid = 65534
    allow = ["127.0.0.0/8", "::1/128"]   # client networks for TCP
    snapshot_admin = false         # let non-root users mkdir/rmdir in /.snapshots

    [exports.main.groups]          # supplementary groups per uid (else /etc/group)
    1000 = [1000, 27]

    [[exports.main.schedule]]      # scheduled snapshots auto-<name>-<UTC time>
    name = "hourly"
    every = "1h"
    keep = 24
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .address import Address, parse_address
from .scheduler import Schedule, parse_schedules

SQUASH_MODES = ("none", "root", "all")


class ConfigError(ValueError):
    """The configuration file is invalid; the message says where and why."""


@dataclass(frozen=True)
class ExportConfig:
    """How one dataset is exported."""

    name: str
    read_only: bool = False
    squash: str = "none"
    anon_uid: int = 65534
    anon_gid: int = 65534
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    snapshot_admin: bool = False
    groups: dict[int, tuple[int, ...]] | None = None
    schedules: tuple[Schedule, ...] = ()

    def allows_peer(self, host: str | None) -> bool:
        """Whether a TCP peer address may attach (unix sockets always may)."""
        if host is None or not self.allow:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow if net.version == addr.version)


_SIZE_RE = re.compile(r"(\d+)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d*)?)\s*%")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Reserve:
    """Free space the store keeps for its catalog: a byte count or a share of the filesystem.

    Writes fail with ENOSPC once free space would drop below it, and Tstatfs
    reports the space above it as available (DESIGN.md §6).
    """

    nbytes: int | None = 64 << 20
    percent: float | None = None

    def resolve(self, path: str) -> int:
        """The reserve in bytes for a store at ``path`` (a percentage of its filesystem's size)."""
        if self.percent is None:
            return int(self.nbytes or 0)
        probe = os.path.abspath(path)
        while not os.path.exists(probe):  # a store not created yet: its filesystem is the parent's
            probe = os.path.dirname(probe)
        st = os.statvfs(probe)
        return int(st.f_blocks * st.f_frsize * self.percent / 100)

    def __str__(self) -> str:
        return f"{self.percent:g}%" if self.percent is not None else str(self.nbytes)


def parse_reserve(text: str | int) -> Reserve:
    """``"256M"``, ``"1G"``, ``"4096"``, ``0`` or ``"5%"`` (of the filesystem, at most 100)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return Reserve(nbytes=text)
    if isinstance(text, str):
        value = text.strip()
        m = _PERCENT_RE.fullmatch(value)
        if m and float(m.group(1)) <= 100:
            return Reserve(nbytes=None, percent=float(m.group(1)))
        m = _SIZE_RE.fullmatch(value)
        if m:
            return Reserve(nbytes=int(m.group(1)) * _UNITS[m.group(2).upper()])
    raise ValueError(f"a free-space reserve is a size such as 256M, 1G, 4096 or 0, or a percentage "
                     f"of the filesystem such as 5%; not {text!r}")


def parse_size(text: str | int, what: str = "a size") -> int:
    """``"1G"``, ``"512M"``, ``"4096"`` or an integer, in bytes."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if isinstance(text, str):
        m = _SIZE_RE.fullmatch(text.strip())
        if m:
            return int(m.group(1)) * _UNITS[m.group(2).upper()]
    raise ValueError(f"{what} is a byte count such as 4096, 512K, 4M or 1G; not {text!r}")


_CHUNKS_RE = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?")


def parse_chunks(text: str) -> str:
    """Validate a chunk location, ``s3://BUCKET`` or ``s3://BUCKET/PREFIX``; returns it unchanged."""
    m = _CHUNKS_RE.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"a chunk location is s3://BUCKET/PREFIX (bucket: 3-63 lower-case letters, digits, "
                         f"dots or hyphens); not {text!r}")
    return text


@dataclass(frozen=True)
class S3Config:
    """The ``[s3]`` table: object-storage settings for stores whose chunks live in a bucket.

    The standard AWS_* variables take precedence over these (cas.s3config
    ``S3Settings.resolve``). The secret never appears in a repr.
    """

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    allow_http: bool | None = None
    cache_size: int | None = None  # bytes of the local chunk cache; None: the store's default
    pool_refresh: float | None = None  # seconds between chunk-set publications (cas/pool.py)
    pool_grace: float | None = None    # gc's grace period in a chunk pool (seconds)

    def file_values(self) -> dict:
        """The connection settings the file gives, for ``S3Settings.resolve``."""
        return {k: v for k in _S3_CONNECTION_KEYS if (v := getattr(self, k)) is not None}


_S3_CONNECTION_KEYS = ("endpoint", "region", "access_key_id", "secret_access_key", "allow_http")
_S3_KEYS = {*_S3_CONNECTION_KEYS, "cache_size", "pool_refresh", "pool_grace"}


@dataclass(frozen=True)
class ServerConfig:
    """Server-wide settings plus the declared exports."""

    exports: dict[str, ExportConfig] = field(default_factory=dict)
    listen: tuple[Address, ...] = ()  # used when `ninep serve` has no --listen
    export_unlisted: bool = True
    max_connections: int = 256  # sessions that completed Tversion
    max_handshakes: int = 64  # connections still negotiating (the oldest is closed for a new one)
    handshake_timeout: float = 10.0  # seconds from connect to a successful Tversion
    idle_timeout: float = 60.0  # seconds a negotiated connection may hold no fid
    max_fids_per_connection: int = 16384
    max_requests_per_connection: int = 64  # every request in flight; at the cap the server stops reading
    max_locks_per_connection: int = 4096  # byte-range locks held; ENOLCK beyond
    max_lock_waits_per_connection: int = 32  # blocking Tlocks waiting; BLOCKED beyond (the client polls)
    unix_socket_mode: int = 0o600
    commit_interval: float = 0.2
    gc_interval: float = 3600.0
    catalog_copy_interval: float = 3600.0  # S3 stores: seconds between catalog copies (0: after snapshots only)
    catalog_copy_keep: int = 24  # newest catalog copies kept in the bucket
    snapdir_hidden: bool = False
    free_space_reserve: Reserve = Reserve()
    chunk_memory: int | None = None  # bytes of verified chunks kept in memory (None: the store's default)
    metadata_memory: int | None = None  # bytes of inode records and rows per dataset (None: the store's default)
    admin_socket: str | None = None  # None: <store>/admin.sock; "" disables it
    admin_listen: str | None = None  # "tcp:HOST:PORT": also serve the admin API on TCP
    admin_token: str | None = None  # bearer token the TCP admin listener requires
    admin_transfer_roots: tuple[str, ...] = ()  # where TCP admin clients may import from / export to
    chunks: str | None = None  # s3://BUCKET/PREFIX: where a new store keeps its chunks (None: local)
    s3: S3Config = S3Config()

    @property
    def lock_waits_per_connection(self) -> int:
        """Lock waits allowed, always below the request cap.

        A waiting Tlock holds a request slot until another request (maybe on
        this very connection) releases the lock; keeping waiters below the
        cap leaves slots for requests that finish on their own, so the
        connection always reads on and the release always arrives.
        """
        return max(0, min(self.max_lock_waits_per_connection, self.max_requests_per_connection - 1))

    def export(self, dataset: str) -> ExportConfig | None:
        """The export settings for a dataset, or None if it is not exported."""
        if dataset in self.exports:
            return self.exports[dataset]
        if self.export_unlisted:
            return ExportConfig(name=dataset)
        return None


_SERVER_KEYS = {
    "max_connections": int,
    "max_handshakes": int,
    "handshake_timeout": float,
    "idle_timeout": float,
    "max_fids_per_connection": int,
    "max_requests_per_connection": int,
    "max_locks_per_connection": int,
    "max_lock_waits_per_connection": int,
    "commit_interval": float,
    "gc_interval": float,
    "catalog_copy_interval": float,
    "catalog_copy_keep": int,
    "export_unlisted": bool,
    "snapdir_hidden": bool,
}
_POSITIVE_KEYS = {
    "max_connections",
    "max_handshakes",
    "handshake_timeout",
    "idle_timeout",
    "max_fids_per_connection",
    "max_requests_per_connection",
    "max_locks_per_connection",
    "catalog_copy_keep",
}
_EXPORT_KEYS = {"read_only", "squash", "anon_uid", "anon_gid", "allow", "snapshot_admin", "groups", "schedule"}


def load_config(path: str | Path) -> ServerConfig:
    """Parse and validate a TOML configuration file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=str(path))


def parse_config(data: dict, source: str = "config") -> ServerConfig:
    """Build a ServerConfig from already-parsed TOML data."""
    unknown = set(data) - {"server", "exports", "admin", "s3"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; "
                          "expected [server], [admin], [s3] and [exports.NAME]")
    server = dict(data.get("server", {}))
    kwargs: dict = {}
    for key, value in server.items():
        if key == "unix_socket_mode":
            try:
                kwargs[key] = int(str(value), 8)
            except ValueError:
                raise ConfigError(f"{source}: server.unix_socket_mode must be octal like \"0600\"") from None
        elif key == "listen":
            kwargs[key] = _parse_listen(value, source)
        elif key == "free_space_reserve":
            try:
                kwargs[key] = parse_reserve(value)
            except ValueError as exc:
                raise ConfigError(f"{source}: server.free_space_reserve: {exc}") from None
        elif key in ("chunk_memory", "metadata_memory"):
            try:
                kwargs[key] = parse_size(value, f"server.{key}")
            except ValueError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        elif key == "chunks":
            try:
                kwargs[key] = parse_chunks(value)
            except ValueError as exc:
                raise ConfigError(f"{source}: server.chunks: {exc}") from None
        elif key in _SERVER_KEYS:
            want = _SERVER_KEYS[key]
            if not isinstance(value, want) and not (want is float and isinstance(value, int)) \
                    or (want is not bool and isinstance(value, bool)):
                raise ConfigError(f"{source}: server.{key} must be {want.__name__}")
            if want is float and not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{source}: server.{key} must be a finite number >= 0")
            kwargs[key] = want(value)
            if key in _POSITIVE_KEYS and not value > 0:
                raise ConfigError(f"{source}: server.{key} must be positive")
        else:
            raise ConfigError(f"{source}: unknown key server.{key}")
    requests = kwargs.get("max_requests_per_connection", ServerConfig.max_requests_per_connection)
    waits = kwargs.get("max_lock_waits_per_connection", ServerConfig.max_lock_waits_per_connection)
    if not 0 <= waits < requests:
        raise ConfigError(
            f"{source}: server.max_lock_waits_per_connection must be at least 0 and below "
            f"max_requests_per_connection ({requests}), so that waiting locks never hold every request slot"
        )
    kwargs.update(_parse_admin(data.get("admin", {}), source))
    if "s3" in data:
        kwargs["s3"] = _parse_s3(data["s3"], source)
    exports = {}
    for name, table in data.get("exports", {}).items():
        exports[name] = _parse_export(name, table, source)
    return ServerConfig(exports=exports, **kwargs)


def _parse_listen(value, source: str) -> tuple[Address, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{source}: server.listen must be a list of addresses, e.g. ["tcp:127.0.0.1:5640"]')
    try:
        return tuple(parse_address(v) for v in value)
    except ValueError as exc:
        raise ConfigError(f"{source}: server.listen: {exc}") from None


def _parse_admin(table: dict, source: str) -> dict:
    unknown = set(table) - {"socket", "listen", "token", "token_file", "transfer_roots"}
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) admin.{sorted(unknown)}; known: socket, listen, token, token_file, transfer_roots"
        )
    out: dict = {}
    if "transfer_roots" in table:
        roots = table["transfer_roots"]
        if not isinstance(roots, list) or not all(isinstance(r, str) and r.startswith("/") for r in roots):
            raise ConfigError(f"{source}: admin.transfer_roots must be a list of absolute paths")
        out["admin_transfer_roots"] = tuple(roots)
    if "socket" in table:
        out["admin_socket"] = str(table["socket"])
    if "listen" in table:
        listen = str(table["listen"])
        if not listen.startswith("tcp:"):
            raise ConfigError(f"{source}: admin.listen must be tcp:HOST:PORT (the unix socket is admin.socket)")
        out["admin_listen"] = listen
    token = table.get("token")
    if "token_file" in table:
        try:
            token = Path(table["token_file"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read admin.token_file: {exc.strerror}") from None
    if token is not None:
        if len(str(token)) < 16:
            raise ConfigError(f"{source}: admin.token must be at least 16 characters")
        out["admin_token"] = str(token)
    if "admin_listen" in out and "admin_token" not in out:
        raise ConfigError(f"{source}: admin.listen on TCP needs admin.token or admin.token_file")
    return out


def _parse_s3(table, source: str) -> S3Config:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [s3] must be a table")
    unknown = set(table) - _S3_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) s3.{sorted(unknown)}; known: {sorted(_S3_KEYS)}")
    out: dict = {}
    for key in ("endpoint", "region", "access_key_id", "secret_access_key"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise ConfigError(f"{source}: s3.{key} must be a non-empty string")
            out[key] = table[key]
    if "allow_http" in table:
        if not isinstance(table["allow_http"], bool):
            raise ConfigError(f"{source}: s3.allow_http must be true or false")
        out["allow_http"] = table["allow_http"]
    if "cache_size" in table:
        try:
            out["cache_size"] = parse_size(table["cache_size"], "s3.cache_size")
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    for key in ("pool_refresh", "pool_grace"):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (key == "pool_refresh" and v == 0):
                raise ConfigError(f"{source}: s3.{key} must be a number of seconds"
                                  f"{' > 0' if key == 'pool_refresh' else ' >= 0'}")
            out[key] = float(v)
    return S3Config(**out)


def _parse_export(name: str, table: dict, source: str) -> ExportConfig:
    where = f"{source}: exports.{name}"
    unknown = set(table) - _EXPORT_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_EXPORT_KEYS)}")
    squash = table.get("squash", "none")
    if squash not in SQUASH_MODES:
        raise ConfigError(f"{where}: squash must be one of {SQUASH_MODES}, not {squash!r}")
    try:
        allow = tuple(ipaddress.ip_network(n, strict=False) for n in table.get("allow", []))
    except ValueError as exc:
        raise ConfigError(f"{where}: bad network in allow: {exc}") from None
    groups = None
    if "groups" in table:
        try:
            groups = {int(uid): tuple(int(g) for g in gids) for uid, gids in table["groups"].items()}
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.groups: expected uid = [gid, ...]") from None
    try:
        schedules = parse_schedules(name, table.get("schedule", []))
    except ValueError as exc:
        raise ConfigError(f"{where}.schedule: {exc}") from None
    return ExportConfig(
        name=name,
        schedules=schedules,
        read_only=bool(table.get("read_only", False)),
        squash=squash,
        anon_uid=int(table.get("anon_uid", 65534)),
        anon_gid=int(table.get("anon_gid", 65534)),
        allow=allow,
        snapshot_admin=bool(table.get("snapshot_admin", False)),
        groups=groups,
    )
