#!/usr/bin/env python3
"""Boot the ninep test guest under QEMU, mount a 9P server, run a script.

Library use (tests/vm does this):

    import runner
    res = runner.run_guest("ls -la /mnt/9p", transport="tcp",
                           server="tcp:127.0.0.1:5640",
                           mount_opts="version=9p2000.L,msize=512000,access=user,cache=none")
    res.rc, res.output

CLI use (see vm-images/README.md):

    vm-images/run-guest --server tcp:127.0.0.1:5640 --transport tcp -- 'ls -la /mnt/9p'
    vm-images/run-guest --server unix:/run/ninep.sock --transport fd --script job.sh

The guest's console output is streamed (to stdout, or a callback) while it
runs; the exit status of the guest script is returned.  A hard timeout kills
QEMU.

Transports:
  tcp  QEMU user networking; the guest mounts 10.0.2.2:PORT, which QEMU
       forwards to the host's 127.0.0.1:PORT.
  fd   no guest network.  Each of N virtio-serial ports (named ninep.0 ...)
       is a QEMU socket chardev connected to the server (unix socket or TCP
       port); the guest relays a port through two pipes and mounts with
       trans=fd,rfdno=3,wfdno=4 (see guest/9p-fd-relay).
  virtio  no 9P server process: QEMU's built-in virtio-9p exports a host
       directory (server="dir:/PATH"; -virtfs local,security_model=none,
       mount_tag=host0) and the guest mounts it with trans=virtio.  The
       reference for what the guest itself can do (the benchmarks use it).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build  # noqa: E402

EXIT_RE = re.compile(rb"@@NINEP-VM-EXIT (\d+)@@")
DEFAULT_OPTS = "version=9p2000.L,msize=512000,access=user,cache=none"
VIRTIO_TAG = "host0"


class GuestError(RuntimeError):
    pass


@dataclasses.dataclass
class GuestResult:
    rc: int | None          # the guest script's exit status; None if no marker
    output: str             # the whole console output
    seconds: float
    timed_out: bool
    qemu_rc: int | None
    command: list[str]

    @property
    def ok(self) -> bool:
        return self.rc == 0


def parse_server(server: str) -> tuple[str, str, int | None]:
    """'tcp:HOST:PORT' | 'unix:PATH' -> (kind, host-or-path, port)."""
    if server.startswith("tcp:"):
        host, _, port = server[4:].rpartition(":")
        return "tcp", host.strip("[]") or "127.0.0.1", int(port)
    if server.startswith("unix:"):
        return "unix", server[5:], None
    if server.startswith("dir:"):
        return "dir", server[4:], None
    raise ValueError(f"server must be tcp:HOST:PORT, unix:PATH or dir:PATH, not {server!r}")


def job_cpio(script: bytes, config: dict[str, str], files: dict[str, bytes]) -> bytes:
    """A second cpio archive appended to the initramfs: /job/*."""
    c = build.Cpio()
    lines = "".join(f"{k}={shlex.quote(v)}\n" for k, v in config.items())
    c.file("job/config", lines.encode())
    if not script.startswith(b"#!"):
        script = b"#!/bin/bash\n" + script
    c.file("job/script", script, 0o755)
    for name, data in files.items():
        name = name.lstrip("/")
        parts = name.split("/")
        for i in range(1, len(parts)):
            c.dir("job/" + "/".join(parts[:i]))
        c.file("job/" + name, data, 0o755 if data.startswith(b"#!") else 0o644)
    return c.finish()


#: A guest kernel that livelocks (a soft lockup: a CPU in the kernel without a
#: reschedule for 2 * watchdog_thresh seconds) panics, and the panic ends the
#: boot (panic=-1 reboots, -no-reboot exits QEMU) with the whole kernel log
#: replayed on the console (panic_print bit 5), every CPU's backtrace included:
#: the test fails in a minute with the trace, not at its timeout without one.
#: 30 s, not the default 10 s: a TCG vCPU thread the host leaves unscheduled
#: for a while must not pass for a livelock.
LOCKUP_CMDLINE = ("panic=-1 softlockup_panic=1 softlockup_all_cpu_backtrace=1 "
                  "watchdog_thresh=30 panic_print=0x20")


def qemu_command(images: dict, initrd: Path, transport: str, server: str,
                 fd_ports: int, memory_mib: int, smp: int, cmdline_extra: str = "") -> list[str]:
    cmd = [
        "qemu-system-x86_64",
        "-accel", "tcg", "-cpu", "max,la57=off", "-machine", "q35",
        "-m", str(memory_mib), "-smp", str(smp),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", images["vmlinux"], "-initrd", str(initrd),
        "-append", (f"console=ttyS0 quiet loglevel=4 {LOCKUP_CMDLINE} rdinit=/init "
                    + cmdline_extra).strip(),
        "-serial", "stdio",
        "-drive", f"file={images['rootfs']},if=virtio,format=raw,readonly=on",
    ]
    kind, addr, port = parse_server(server)
    if transport == "tcp":
        if kind != "tcp":
            raise ValueError("trans=tcp needs a tcp:HOST:PORT server")
        cmd += ["-nic", "user,model=virtio-net-pci"]
    elif transport == "fd":
        cmd += ["-nic", "none", "-device", "virtio-serial-pci,id=vser0"]
        for i in range(fd_ports):
            if kind == "unix":
                chardev = f"socket,id=ninep{i},path={addr}"
            else:
                chardev = f"socket,id=ninep{i},host={addr},port={port},nodelay=on"
            cmd += ["-chardev", chardev,
                    "-device", f"virtserialport,bus=vser0.0,chardev=ninep{i},name=ninep.{i}"]
    elif transport == "virtio":
        if kind != "dir":
            raise ValueError("trans=virtio needs a dir:PATH server (QEMU's own 9p)")
        cmd += ["-nic", "none",
                "-virtfs", f"local,path={addr},mount_tag={VIRTIO_TAG},security_model=none,id=fs0"]
    else:
        raise ValueError(f"transport must be tcp, fd or virtio, not {transport!r}")
    return cmd


def run_guest(script: str | bytes, *, server: str, transport: str = "tcp",
              mount_opts: str = DEFAULT_OPTS, aname: str = "",
              automount: str | None = "/mnt/9p", fd_ports: int = 4,
              files: dict[str, bytes] | None = None, env: dict[str, str] | None = None,
              timeout: float = 600, output: Callable[[str], None] | None = None,
              memory_mib: int = 1536, smp: int = 2, images: dict | None = None,
              build_images: bool = True) -> GuestResult:
    """Boot, mount `server` on `automount`, run `script`, return its status.

    `output` gets each console line as it arrives (default: sys.stdout).
    The guest script runs as root with /job as its working directory; it can
    call `ninep-mount DIR [OPTS]` for more mounts (each a new connection; for
    trans=fd at most `fd_ports` in all).  `env` goes into /job/config, which
    the script may source.
    """
    if images is None:
        images = build.build_all(install=build_images) if build_images else _cached_images()
    if isinstance(script, str):
        script = script.encode()
    if output is None:
        def output(line: str) -> None:
            sys.stdout.write(line)
            sys.stdout.flush()
    kind, addr, port = parse_server(server)
    config = {
        "NINEP_TRANS": transport,
        "NINEP_HOST": "10.0.2.2",
        "NINEP_PORT": str(port or 0),
        "NINEP_OPTS": mount_opts,
        "NINEP_ANAME": aname,
        "NINEP_AUTOMOUNT": automount or "",
    }
    config.update(env or {})
    if transport == "virtio" and automount:
        # guest/ninep-mount knows tcp and fd only: mount here, before the job
        config["NINEP_AUTOMOUNT"] = ""
        opts = f"trans=virtio,{mount_opts}" + (f",aname={aname}" if aname else "")
        body = script[script.index(b"\n") + 1:] if script.startswith(b"#!") else script
        script = (b"#!/bin/bash\nmkdir -p " + shlex.quote(automount).encode()
                  + b"\nmount -t 9p -o " + shlex.quote(opts).encode() + b" " + VIRTIO_TAG.encode()
                  + b" " + shlex.quote(automount).encode()
                  + b" || { echo 'run-guest: virtio-9p mount failed'; exit 125; }\n" + body)
    with tempfile.TemporaryDirectory(prefix="ninep-vm.") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        with open(initrd, "wb") as f:
            f.write(Path(images["initramfs"]).read_bytes())
            f.write(job_cpio(script, config, files or {}))
        cmd = qemu_command(images, initrd, transport, server, fd_ports, memory_mib, smp)
        return _run_qemu(cmd, timeout, output)


def _cached_images() -> dict:
    import json
    p = build.cache_dir() / "images.json"
    if not p.exists():
        raise GuestError(f"no images in {p.parent}: run vm-images/build.py")
    return json.loads(p.read_text())


def _run_qemu(cmd: list[str], timeout: float, output: Callable[[str], None]) -> GuestResult:
    t0 = time.monotonic()
    deadline = t0 + timeout
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    buf = bytearray()
    pending = b""
    rc = None
    timed_out = False
    fd = proc.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                output(line.decode("utf-8", "replace") + "\n")
            m = EXIT_RE.search(buf[-4096:] if len(buf) > 4096 else buf)
            if m and rc is None:
                rc = int(m.group(1))
        if pending:
            output(pending.decode("utf-8", "replace") + "\n")
    finally:
        if proc.poll() is None:
            # After the marker the guest powers off by itself; give it a moment.
            try:
                proc.wait(timeout=5 if rc is not None and not timed_out else 0.1)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
    if rc is None:
        m = EXIT_RE.search(buf)
        rc = int(m.group(1)) if m else None
    if timed_out:
        output(f"\n[run-guest] TIMEOUT after {timeout:.0f}s: QEMU killed\n")
    return GuestResult(rc=rc, output=buf.decode("utf-8", "replace"),
                       seconds=time.monotonic() - t0, timed_out=timed_out,
                       qemu_rc=proc.returncode, command=cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="run-guest",
        description="Boot the test guest, mount a 9P server, run a script, return its status.")
    ap.add_argument("--server", required=True,
                    help="tcp:127.0.0.1:PORT or unix:PATH (unix only with --transport fd), "
                         "dir:PATH with --transport virtio")
    ap.add_argument("--transport", choices=["tcp", "fd", "virtio"], default="tcp",
                    help="virtio: QEMU's built-in 9p exporting --server dir:PATH")
    ap.add_argument("--opts", default=DEFAULT_OPTS, help=f"mount options (default {DEFAULT_OPTS})")
    ap.add_argument("--aname", default="", help="attach name (export)")
    ap.add_argument("--mount", default="/mnt/9p", help="automatic mount point ('' for none)")
    ap.add_argument("--fd-ports", type=int, default=4, help="virtio-serial ports for trans=fd")
    ap.add_argument("--timeout", type=float, default=600, help="hard timeout in seconds")
    ap.add_argument("--memory", type=int, default=1536, help="guest memory, MiB")
    ap.add_argument("--script", help="file with the guest script (default: the command)")
    ap.add_argument("--file", action="append", default=[], metavar="SRC[:NAME]",
                    help="copy SRC into the guest as /job/NAME")
    ap.add_argument("--print-command", action="store_true",
                    help="print the QEMU command line to stderr")
    ap.add_argument("command", nargs="*", help="shell command to run in the guest")
    args = ap.parse_args(argv)
    if args.script:
        script = Path(args.script).read_bytes()
    elif args.command:
        script = ("#!/bin/sh\n" + " ".join(args.command) + "\n").encode()
    else:
        ap.error("give --script FILE or a command")
    files = {}
    for spec in args.file:
        src, _, name = spec.partition(":")
        files[name or Path(src).name] = Path(src).read_bytes()
    res = run_guest(script, server=args.server, transport=args.transport, mount_opts=args.opts,
                    aname=args.aname, automount=args.mount or None, fd_ports=args.fd_ports,
                    files=files, timeout=args.timeout, memory_mib=args.memory)
    if args.print_command:
        print(shlex.join(res.command), file=sys.stderr)
    print(f"[run-guest] rc={res.rc} in {res.seconds:.1f}s", file=sys.stderr)
    if res.timed_out:
        return 124
    return 125 if res.rc is None else res.rc


if __name__ == "__main__":
    sys.exit(main())
