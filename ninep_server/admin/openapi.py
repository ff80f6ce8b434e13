"""The OpenAPI 3 description of the admin API (served at /openapi.json).

docs/openapi.json is this document, committed; a test keeps them equal.
"""

from __future__ import annotations

from .. import __version__

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
# An absolute host path: no NUL byte, which no file system path can hold.
_PATH = {"type": "string", "pattern": "^/[^\\x00]*$"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _ok(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(name: str) -> dict:
    return {"type": "array", "items": _ref(name)}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_DS = {"name": "name", "in": "path", "required": True, "schema": _NAME}
_SNAP = {"name": "snapshot", "in": "path", "required": True, "schema": _NAME}
_COMMON_ERRORS = {"400": _error("Invalid request"), "401": _error("Missing or wrong bearer token (TCP listener)")}

OPENAPI: dict = {
    "openapi": "3.0.3",
    "info": {
        "title": "ninep admin API",
        "version": __version__,
        "description": "Manage the datasets and snapshots of a running ninep server, run gc, scrub and import "
        "jobs, read stats and metrics. Served on a unix socket (mode 0600) and optionally on TCP with a bearer token. "
        "Errors are JSON objects with a stable machine-readable code.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            },
            "Dataset": {
                "type": "object",
                "required": ["name", "created", "created_ns", "snapshots", "read_only", "quota", "schedule", "origin"],
                "properties": {
                    "name": {"type": "string"},
                    "created": {"type": "string"},
                    "created_ns": {"type": "integer"},
                    "snapshots": {"type": "integer", "minimum": 0},
                    "read_only": {"type": "boolean"},
                    "quota": {"type": "integer", "minimum": 0, "description": "bytes of the live tree; 0: none"},
                    "schedule": {"type": "array", "items": _ref("Schedule")},
                    "origin": {"type": "string", "nullable": True, "description": "DATASET@SNAPSHOT of a clone"},
                },
            },
            "Schedule": {
                "type": "object",
                "required": ["name", "every", "keep"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,20}$"},
                    "every": {"type": "string", "pattern": "^[1-9][0-9]{0,8}[smhdw]?$", "description": "30s, 15m, 1h, 1d, 1w or seconds"},
                    "keep": {"type": "integer", "minimum": 1},
                },
                "additionalProperties": False,
            },
            "DatasetProperties": {
                "type": "object",
                "properties": {
                    "read_only": {"type": "boolean"},
                    "quota": {"type": "integer", "minimum": 0},
                    "schedule": {
                        "type": "array",
                        "items": _ref("Schedule"),
                        "description": "entries are keyed by name: a later entry replaces an earlier one",
                    },
                },
                "additionalProperties": False,
            },
            "Snapshot": {
                "type": "object",
                "required": ["id", "dataset", "name", "gen", "created_ns", "created"],
                "properties": {
                    "id": {"type": "integer"},
                    "dataset": {"type": "string"},
                    "name": {"type": "string"},
                    "gen": {"type": "integer"},
                    "created_ns": {"type": "integer"},
                    "created": {"type": "string"},
                },
            },
            "DiffEntry": {
                "type": "object",
                "required": ["kind", "path", "old_path"],
                "properties": {
                    "kind": {"type": "string", "enum": ["+", "-", "M", "R"]},
                    "path": {"type": "string"},
                    "old_path": {"type": "string", "nullable": True},
                },
            },
            "Job": {
                "type": "object",
                "required": ["id", "kind", "state", "params", "started", "done"],
                "properties": {
                    "id": {"type": "string"},
                    "kind": {"type": "string", "enum": ["gc", "scrub", "fsck", "import", "export", "send", "receive", "have"]},
                    "state": {"type": "string", "enum": ["running", "succeeded", "failed"]},
                    "params": {"type": "object"},
                    "started": {"type": "number"},
                    "finished": {"type": "number", "nullable": True},
                    "done": {"type": "integer"},
                    "total": {"type": "integer", "nullable": True},
                    "result": {"type": "object", "nullable": True},
                    "error": {"type": "string", "nullable": True},
                },
            },
            "JobRequest": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {"kind": {"type": "string", "enum": ["gc"]}, "dry_run": {"type": "boolean"},
                                       "force": {"type": "boolean"},
                                       "grace": {"type": "number", "minimum": 0}},
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {"kind": {"type": "string", "enum": ["scrub"]}},
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind"],
                        "properties": {"kind": {"type": "string", "enum": ["fsck"]}, "repair": {"type": "boolean"}},
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind", "source", "dataset"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["import"]},
                            "source": {**_PATH, "description": "a directory on the server's host"},
                            "dataset": _NAME,
                            "path": _PATH,
                        },
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind", "dataset", "dest"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["export"]},
                            "dataset": _NAME,
                            "dest": {
                                **_PATH,
                                "description": "a directory on the server's host; one that exists keeps its own "
                                "mode and owner",
                            },
                            "snapshot": _NAME,
                            "path": _PATH,
                            "preserve_owner": {
                                "type": "boolean",
                                "description": "restore owners, and with them setuid/setgid bits (the server must "
                                "run as root); default false: files belong to the server's user, no setuid/setgid",
                            },
                        },
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind", "dataset", "snapshot", "file"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["send"]},
                            "dataset": _NAME,
                            "snapshot": _NAME,
                            "since": {**_NAME, "description": "an older snapshot: send an incremental stream"},
                            "file": {**_PATH, "description": "where the stream goes on the server's host: a file, or "
                                     "a FIFO the client reads"},
                            "have": {**_PATH, "description": "a have list on the server's host (ninep snapshot have): "
                                     "chunks listed there are not sent"},
                        },
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind", "dataset", "file"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["receive"]},
                            "dataset": _NAME,
                            "file": {**_PATH, "description": "the stream on the server's host: a file, or a FIFO the "
                                     "client writes"},
                            "force": {"type": "boolean", "description": "roll the dataset back to its latest "
                                      "snapshot first if it changed since"},
                        },
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "required": ["kind", "dataset", "file"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["have"]},
                            "dataset": _NAME,
                            "file": {**_PATH, "description": "where the have list goes on the server's host"},
                            "chunks": {"type": "boolean", "description": "list the chunks this store holds "
                                       "(default true)"},
                        },
                        "additionalProperties": False,
                    },
                ]
            },
            "NameRequest": {"type": "object", "required": ["name"], "properties": {"name": _NAME}},
            "Status": {"type": "object"},
            "Result": {"type": "object"},
        },
    },
    "security": [{}, {"bearer": []}],
    "paths": {
        "/health": {
            "get": {
                "summary": "Liveness; never needs a token",
                "security": [{}],
                "responses": {
                    "200": _ok({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}})
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            }
        },
        "/v1/status": {
            "get": {
                "summary": "Listeners, exports, sessions, commit and cache figures",
                "responses": {"200": _ok(_ref("Status")), **_COMMON_ERRORS},
            }
        },
        "/v1/datasets": {
            "get": {"summary": "List datasets", "responses": {"200": _ok(_array("Dataset")), **_COMMON_ERRORS}},
            "post": {
                "summary": "Create a dataset; it is served at once under its aname",
                "requestBody": _body(_ref("NameRequest")),
                "responses": {"201": _ok(_ref("Dataset"), "Created"), "409": _error("Exists"), **_COMMON_ERRORS},
            },
        },
        "/v1/datasets/{name}": {
            "parameters": [_DS],
            "get": {"summary": "One dataset", "responses": {"200": _ok(_ref("Dataset")), "404": _error("No such dataset"), **_COMMON_ERRORS}},
            "patch": {
                "summary": "Set properties: read_only, quota (EDQUOT past it; statfs shows it), snapshot schedule",
                "requestBody": _body(_ref("DatasetProperties")),
                "responses": {"200": _ok(_ref("Dataset")), "404": _error("No such dataset"), **_COMMON_ERRORS},
            },
            "delete": {
                "summary": "Delete a dataset (refused while clients use it, the configuration exports it, or it has clones)",
                "responses": {
                    "200": _ok(_ref("Result")),
                    "404": _error("No such dataset"),
                    "409": _error("In use"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/v1/snapshots": {
            "get": {"summary": "Every snapshot of every dataset", "responses": {"200": _ok(_array("Snapshot")), **_COMMON_ERRORS}},
        },
        "/v1/datasets/{name}/snapshots": {
            "parameters": [_DS],
            "get": {"summary": "List snapshots, oldest first", "responses": {"200": _ok(_array("Snapshot")), "404": _error("No such dataset"), **_COMMON_ERRORS}},
            "post": {
                "summary": "Take a snapshot (instant; includes every write answered before)",
                "requestBody": _body(_ref("NameRequest")),
                "responses": {
                    "201": _ok(_ref("Snapshot"), "Created"),
                    "404": _error("No such dataset"),
                    "409": _error("Exists"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/v1/datasets/{name}/snapshots/{snapshot}": {
            "parameters": [_DS, _SNAP],
            "get": {"summary": "One snapshot", "responses": {"200": _ok(_ref("Snapshot")), "404": _error("Not found"), **_COMMON_ERRORS}},
            "delete": {"summary": "Delete a snapshot", "responses": {"200": _ok(_ref("Result")), "404": _error("Not found"), **_COMMON_ERRORS}},
        },
        "/v1/datasets/{name}/snapshots/{snapshot}/rollback": {
            "parameters": [_DS, _SNAP],
            "post": {
                "summary": "Make the live tree equal to the snapshot (later snapshots are kept)",
                "responses": {"200": _ok(_ref("Result")), "404": _error("Not found"), **_COMMON_ERRORS},
            },
        },
        "/v1/datasets/{name}/snapshots/{snapshot}/clone": {
            "parameters": [_DS, _SNAP],
            "post": {
                "summary": "Create a writable dataset from the snapshot, sharing its chunks",
                "requestBody": _body(_ref("NameRequest")),
                "responses": {
                    "201": _ok(_ref("Result"), "Created"),
                    "404": _error("Not found"),
                    "409": _error("Exists"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/v1/stats": {
            "get": {"summary": "Space per dataset and store: logical bytes, unique bytes, dedup ratio, snapshots' exclusive space", "responses": {"200": _ok(_ref("Result")), **_COMMON_ERRORS}},
        },
        "/v1/jobs": {
            "get": {"summary": "Recent and running jobs", "responses": {"200": _ok(_array("Job")), **_COMMON_ERRORS}},
            "post": {
                "summary": "Start a gc, scrub, fsck, import, export, send, receive or have job",
                "requestBody": _body(_ref("JobRequest")),
                "responses": {
                    "202": _ok(_ref("Job"), "Started"),
                    "403": _error("Path outside [admin] transfer_roots (TCP listener)"),
                    "404": _error("No such dataset or snapshot"),
                    **_COMMON_ERRORS,
                },
            },
        },
        "/v1/jobs/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "One job, with progress and result", "responses": {"200": _ok(_ref("Job")), "404": _error("No such job"), **_COMMON_ERRORS}},
        },
        "/v1/datasets/{name}/diff": {
            "parameters": [
                _DS,
                {"name": "from", "in": "query", "required": True, "schema": _NAME},
                {"name": "to", "in": "query", "required": False, "schema": _NAME, "description": "default: live tree"},
            ],
            "get": {"summary": "Changes between two snapshots or a snapshot and live", "responses": {"200": _ok(_array("DiffEntry")), "404": _error("Not found"), **_COMMON_ERRORS}},
        },
    },
}


if __name__ == "__main__":  # regenerate docs/openapi.json
    import json
    import sys

    json.dump(OPENAPI, sys.stdout, indent=2)
    sys.stdout.write("\n")
