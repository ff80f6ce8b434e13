#!/bin/sh
# Build (idempotently) the guest kernel, initramfs and userland: see README.md.
exec python3 "$(dirname "$(readlink -f "$0")")/build.py" "$@"
