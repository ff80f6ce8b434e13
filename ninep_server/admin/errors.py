"""Stable, machine-readable error codes of the admin API."""

from __future__ import annotations

import errno

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error answered as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"code": self.code, "message": self.message}}, status_code=self.status)


#: errno -> (HTTP status, code) for failures reported by the storage engine.
_ERRNO = {
    errno.ENOENT: (404, "not_found"),
    errno.EEXIST: (409, "already_exists"),
    errno.EINVAL: (400, "invalid_argument"),
    errno.EBUSY: (409, "busy"),
    errno.ENOTEMPTY: (409, "not_empty"),
    errno.EROFS: (409, "read_only"),
    errno.EPERM: (403, "forbidden"),
    errno.EACCES: (403, "forbidden"),
    errno.ENOSPC: (507, "no_space"),
    errno.EDQUOT: (507, "quota_exceeded"),
    errno.EIO: (500, "io_error"),
}


def from_oserror(exc: OSError) -> ApiError:
    status, code = _ERRNO.get(exc.errno or 0, (500, "internal"))
    return ApiError(status, code, exc.strerror or str(exc))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_argument", message)
