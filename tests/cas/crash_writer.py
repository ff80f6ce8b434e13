"""Crash-test worker: writes and fsyncs files until killed.

Usage: python crash_writer.py STORE LOG SEED

After each fsync returns it appends "name hexdigest" to LOG, so every name in
LOG must survive a SIGKILL with exactly that content. It also leaves unsynced
scratch writes around and runs a commit loop thread like the server does.
"""

import hashlib
import random
import sys
import threading
import time

from cas import Store


def main() -> None:
    path, logpath, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = Store.open(path, create=True, commit_interval=0.05, reserve_bytes=0)
    if "main" not in store.datasets():
        store.create_dataset("main")
    vol = store.volume("main")

    def commit_loop():
        while True:
            time.sleep(store.commit_interval)
            try:
                store.commit()
            except Exception:
                pass

    threading.Thread(target=commit_loop, daemon=True).start()
    log = open(logpath, "a", buffering=1)
    print("ready", flush=True)
    cs = store.chunk_size
    i = 0
    while True:
        i += 1
        name = b"s%d-%d" % (seed, i)
        f = vol.create(vol.root, name, 0o644, 0, 0)
        size = rng.choice([0, 1, 100, 4096, cs - 1, cs, cs + 1, 3 * cs + 17,
                           rng.randrange(1, 600_000)])
        data = bytearray(rng.randbytes(size))
        pos = 0
        while pos < size:  # write in random pieces
            n = min(size - pos, rng.choice([1000, 4096, 65536, cs, 200_000]))
            vol.write(f.ino, pos, bytes(data[pos:pos + n]))
            pos += n
        if size > 10 and rng.random() < 0.3:  # overwrite in the middle
            off = rng.randrange(size - 5)
            data[off:off + 5] = b"XXXXX"
            vol.write(f.ino, off, b"XXXXX")
        vol.fsync(f.ino)
        log.write("%s %s\n" % (name.decode(), hashlib.sha256(data).hexdigest()))
        # unsynced noise: scratch files that may or may not survive
        s = vol.create(vol.root, b"scratch%d-%d" % (seed, i), 0o644, 0, 0)
        vol.write(s.ino, 0, rng.randbytes(rng.randrange(1, 50_000)))
        if i % 3 == 0:
            vol.unlink(vol.root, b"scratch%d-%d" % (seed, i))


if __name__ == "__main__":
    main()
