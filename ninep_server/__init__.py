"""ninep: a 9P2000.L file server with content-addressed storage and snapshots."""

__version__ = "0.1.0"
