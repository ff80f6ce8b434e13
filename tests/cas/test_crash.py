"""SIGKILL the writer at random moments; fsynced files must survive exactly."""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

from cas import Store

ROUNDS = 20
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_sigkill_rounds(tmp_path):
    store = str(tmp_path / "store")
    logpath = str(tmp_path / "fsynced.log")
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=ROOT)
    verified = 0
    for rnd in range(ROUNDS):
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "crash_writer.py"), store,
                              logpath, str(rnd)], stdout=subprocess.PIPE, env=env)
        while True:  # structlog may print before the marker
            line = p.stdout.readline()
            assert line, "worker died before it was ready"
            if line.strip() == b"ready":
                break
        time.sleep(rng.uniform(0.05, 0.6))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        with Store.open(store) as s:
            vol = s.volume("main")
            expect = {}
            if os.path.exists(logpath):
                with open(logpath) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 2 and len(parts[1]) == 64:
                            expect[parts[0]] = parts[1]
            for name, digest in expect.items():
                a = vol.lookup(vol.root, name.encode())
                data = vol.read(a.ino, 0, a.size + 1)
                assert len(data) == a.size
                assert hashlib.sha256(data).hexdigest() == digest, name
            verified = len(expect)
            assert s.check() == [], f"round {rnd}"
    assert verified > ROUNDS  # the workers did get files fsynced
