"""The HTTP/JSON admin API of a running ``ninep serve`` (Starlette on hypercorn/trio)."""
