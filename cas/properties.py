"""Per-dataset properties kept in the catalog: read_only, quota, snapshot schedules.

Stored as (dataset id, key, JSON value) rows in a ``properties`` table, which
is created on first use (older stores simply have none). The storage engine
enforces ``quota`` (EDQUOT past the live tree's logical bytes, like ZFS
refquota); ``read_only`` and ``schedule`` are honoured by the server.
"""

from __future__ import annotations

import errno
import json
from typing import Any

from .errors import FsError

DEFAULTS: dict[str, Any] = {"read_only": False, "quota": 0, "schedule": [], "origin": None}
#: Set by the store itself (a clone's "dataset@snapshot"), never by users.
INTERNAL = {"origin"}


def _check(key: str, value: Any) -> Any:
    if key not in DEFAULTS:
        raise FsError(errno.EINVAL, f"unknown property {key!r}; known: {', '.join(sorted(DEFAULTS))}")
    if key == "read_only":
        if not isinstance(value, bool):
            raise FsError(errno.EINVAL, "read_only must be true or false")
    elif key == "quota":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise FsError(errno.EINVAL, "quota must be a number of bytes >= 0 (0: no quota)")
    elif key == "origin":
        if value is not None and not isinstance(value, str):
            raise FsError(errno.EINVAL, "origin is DATASET@SNAPSHOT")
    elif key == "schedule":
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            raise FsError(errno.EINVAL, 'schedule must be a list like [{"name": "hourly", "every": "1h", "keep": 24}]')
    return value


class Properties:
    """The properties of a store's datasets."""

    def __init__(self, catalog):
        self._cat = catalog
        with catalog.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS properties (dataset INTEGER, key VARCHAR, value VARCHAR)")

    def get(self, ds: int) -> dict[str, Any]:
        """Every property of dataset id ``ds``, defaults filled in."""
        out = dict(DEFAULTS)
        for key, value in self._cat.query("SELECT key, value FROM properties WHERE dataset = ?", [ds]):
            out[key] = json.loads(value)
        return out

    def set(self, ds: int, values: dict[str, Any]) -> dict[str, Any]:
        """Validate and store ``values``; returns the dataset's properties."""
        checked = {k: _check(k, v) for k, v in values.items()}
        with self._cat.transaction() as db:
            for key, value in checked.items():
                db.execute("DELETE FROM properties WHERE dataset = ? AND key = ?", [ds, key])
                if value != DEFAULTS[key]:
                    db.execute("INSERT INTO properties VALUES (?, ?, ?)", [ds, key, json.dumps(value)])
        return self.get(ds)

    def with_origin(self) -> dict[int, str]:
        """dataset id -> origin snapshot, for every clone."""
        rows = self._cat.query("SELECT dataset, value FROM properties WHERE key = 'origin'")
        return {ds: json.loads(value) for ds, value in rows}

    def drop(self, ds: int) -> None:
        with self._cat.transaction() as db:
            db.execute("DELETE FROM properties WHERE dataset = ?", [ds])
