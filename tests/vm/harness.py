"""VM test harness: servers under test, host-side views, batched guest runs.

A *configuration* is (transport, access, cache).  All the workloads selected
for one (server kind, configuration) run in a single guest boot against a
fresh server; each workload's result is then asserted by its own test.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VM_IMAGES = ROOT / "vm-images"
WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"
sys.path.insert(0, str(VM_IMAGES))
import build  # noqa: E402
import hostserver  # noqa: E402
import pjdfstest  # noqa: E402
import runner  # noqa: E402

IN_CI = os.environ.get("CI") == "true"
MSIZE = 512000

# Every workload, in the order one boot runs them.
FULL = ["coreutils", "tar", "bigfile", "unlink_open", "perms", "xattr", "acl", "locks",
        "lock_wait", "sqlite", "git", "unshare", "loose_ro", "snapshots"]
# The smoke subset run on every other configuration.
SMOKE = ["coreutils", "unlink_open", "perms", "locks", "loose_ro", "snapshots"]

# pjdfstest (POSIX conformance, ../shared/ext-tests/pjdfstest-guest.tar) runs
# once per test session: last in the PRIMARY configuration's boot, against
# ninep only (the diod comparison is `python -m bench --only pjdfstest`).
PJDFSTEST = "pjdfstest"
PJDFSTEST_TAR = pjdfstest.TAR_NAME
PJDFSTEST_MIN_PASSED = 8740      # of 8,770 (issue 16); README "Conformance" lists the rest
# Per-workload time limits in the guest where the default (wl_timeout) is too short.
WL_TIMEOUTS = {PJDFSTEST: 3600}  # 11-20 min under TCG; over 30 on a 2-core host shared with other jobs

# Where Debian's diod 1.0.24 (the reference) falls short of the contract;
# its results still show side by side, as xfail / xpass.
DIOD_KNOWN_FAILURES = {
    "snapshots": "diod has no snapshots (/.snapshots is ninep's)",
    "unlink_open": "diod: Tgetattr on an open, unlinked file gives ENOENT (stats by path)",
    "locks": "diod: byte-range locks conflict on disjoint ranges; Tgetlock gives EINVAL",
    "lock_wait": "diod: answers a blocking Tlock with 'blocked', so the kernel retries after 30 s",
}

TRANSPORTS = ["tcp", "fd"]
ACCESSES = ["user", "client"]
CACHES = ["none", "mmap"]


@dataclasses.dataclass(frozen=True)
class VMConfig:
    trans: str
    access: str
    cache: str

    @property
    def id(self) -> str:
        return f"{self.trans}-{self.access}-{self.cache}"

    @property
    def mount_opts(self) -> str:
        return f"version=9p2000.L,msize={MSIZE},access={self.access},cache={self.cache}"


ALL_CONFIGS = [VMConfig(t, a, c) for t in TRANSPORTS for a in ACCESSES for c in CACHES]
PRIMARY = VMConfig("tcp", "user", "none")


def matrix(name: str) -> list[tuple[VMConfig, list[str]]]:
    """Which workloads run on which configuration.

    ci:      the full set on tcp/user/none, the smoke set on the 7 others.
    default: the full set on tcp/user/none and fd/user/none, smoke elsewhere.
    full:    the full set everywhere.
    quick:   the smoke set on tcp/user/none only.
    pjdfstest runs once, last in the tcp/user/none boot, in every matrix but quick.
    """
    full_on = {"ci": {PRIMARY}, "default": {PRIMARY, VMConfig("fd", "user", "none")},
               "full": set(ALL_CONFIGS), "quick": set()}[name]
    if name == "quick":
        return [(PRIMARY, SMOKE)]
    return [(c, FULL + [PJDFSTEST] if c == PRIMARY else FULL if c in full_on else SMOKE)
            for c in ALL_CONFIGS]


def test_user() -> tuple[int, int]:
    """The unprivileged uid/gid used in the guest.

    diod looks every attaching uid up in the host's passwd, so use one that
    exists on the host: 1000 when there is such a user, else nobody.
    """
    for uid in (1000, 65534):
        try:
            pw = pwd.getpwuid(uid)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    return 65534, 65534


# --------------------------------------------------------------------------
# host views of the exported tree

@dataclasses.dataclass
class HostStat:
    kind: str          # f d l o
    mode: int          # permission bits incl. setuid/setgid/sticky
    size: int
    uid: int
    gid: int
    nlink: int
    mtime: int = 0


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "o"


class LocalView:
    """diod: the exported directory, read directly."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _p(self, rel: str | bytes) -> bytes:
        rel = os.fsencode(rel).lstrip(b"/")
        return os.path.join(os.fsencode(self.root), rel) if rel else os.fsencode(self.root)

    def stat(self, rel) -> HostStat:
        st = os.lstat(self._p(rel))
        return HostStat(_kind(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size,
                        st.st_uid, st.st_gid, st.st_nlink, int(st.st_mtime))

    def read(self, rel) -> bytes:
        with open(self._p(rel), "rb") as f:
            return f.read()

    def listdir(self, rel) -> list[bytes]:
        return sorted(os.listdir(self._p(rel)))

    def readlink(self, rel) -> bytes:
        return os.readlink(self._p(rel))

    def getxattr(self, rel, name: str) -> bytes | None:
        return os.getxattr(self._p(rel), name, follow_symlinks=False)

    def exists(self, rel) -> bool:
        return os.path.lexists(self._p(rel))

    def copy_out(self, rel, dest: Path) -> Path:
        shutil.copytree(self._p(rel), os.fsencode(dest), symlinks=True)
        return dest

    def close(self) -> None:
        pass


class NinepView:
    """ninep: the store read through the project's own 9P client.

    Everything the host-side checks need from the client goes through
    `_call`; adjust here if the client's API moves.
    """

    def __init__(self, address: str, aname: bytes = b""):
        self.address = address
        self.aname = aname

    def _call(self, fn):
        import trio
        from ninep_server import client as nc

        async def main():
            async with nc.connect(self.address, msize=MSIZE, uname=b"root", n_uname=0,
                                  aname=self.aname) as c:
                return await fn(c)
        return trio.run(main)

    @staticmethod
    def _b(rel) -> bytes:
        return os.fsencode(rel).strip(b"/")

    def stat(self, rel) -> HostStat:
        st = self._call(lambda c: c.stat(self._b(rel)))
        return HostStat(_kind(st.mode), stat.S_IMODE(st.mode), st.size, st.uid, st.gid,
                        st.nlink, st.mtime_sec)

    def read(self, rel) -> bytes:
        return self._call(lambda c: c.read_file(self._b(rel)))

    def listdir(self, rel) -> list[bytes]:
        return sorted(e.name for e in self._call(lambda c: c.listdir(self._b(rel))))

    def readlink(self, rel) -> bytes:
        async def f(c):
            async with c.fid(self._b(rel)) as fid:
                return await c.readlink(fid)
        return self._call(f)

    def getxattr(self, rel, name: str) -> bytes | None:
        async def f(c):
            async with c.fid(self._b(rel)) as fid:
                newfid = c.alloc_fid()
                size = await c.xattrwalk(fid, newfid, name.encode())
                try:
                    return await c.read(newfid, 0, size) if size else b""
                finally:
                    await c.clunk(newfid)
        return self._call(f)

    def exists(self, rel) -> bool:
        return self._call(lambda c: c.exists(self._b(rel)))

    def copy_out(self, rel, dest: Path) -> Path:
        """Copy a subtree out of the store (files, dirs, symlinks, modes)."""
        async def walk(c, src: bytes, dst: bytes):
            os.makedirs(dst, exist_ok=True)
            for e in await c.listdir(src):
                s = src + b"/" + e.name
                d = os.path.join(dst, e.name)
                st = await c.stat(s)
                if stat.S_ISDIR(st.mode):
                    await walk(c, s, d)
                elif stat.S_ISLNK(st.mode):
                    async with c.fid(s) as fid:
                        os.symlink(await c.readlink(fid), d)
                else:
                    with open(d, "wb") as f:
                        f.write(await c.read_file(s))
                    os.chmod(d, stat.S_IMODE(st.mode))
        self._call(lambda c: walk(c, self._b(rel), os.fsencode(dest)))
        return dest

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------
# servers

class ServerError(RuntimeError):
    pass


class Server:
    kind: str
    tcp: str            # tcp:127.0.0.1:PORT
    unix: str | None    # unix:PATH, when the server listens on one
    aname: str
    view: LocalView | NinepView
    proc: subprocess.Popen
    log_path: Path

    def fd_address(self) -> str:
        """What QEMU's socket chardevs connect to for trans=fd."""
        return self.unix or self.tcp

    def read_only_export(self) -> str | None:
        """The aname of a read-only export holding an empty file `lockfile`, or
        None where the server has none (the locks workload then says so)."""
        return None

    def stop(self) -> None:
        hostserver.stop(self.proc)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


class DiodServer(Server):
    """Debian's diod, exporting a plain directory (the reference server)."""

    kind = "diod"

    def __init__(self, workdir: Path):
        binary = shutil.which("diod") or "/usr/sbin/diod"
        if not os.path.exists(binary):
            build.apt_install(["diod"])
        # diod does the first attach as "nobody", which must be able to reach
        # the export: pytest's tmp dirs are 0700, so export from a 0755 one.
        self._tmp = Path(tempfile.mkdtemp(prefix="ninep-vm-diod."))
        os.chmod(self._tmp, 0o755)
        self.export = self._tmp / "export"
        self.export.mkdir()
        os.chmod(self.export, 0o755)
        self.log_path = workdir / "diod.log"
        try:
            self.proc, port = hostserver.start_diod(binary, self.export, self.log_path)
        except hostserver.ServerStartError as exc:
            raise ServerError(f"diod did not start ({exc}):\n{self.log_tail()}") from exc
        self.tcp = f"tcp:127.0.0.1:{port}"
        self.unix = None
        self.aname = str(self.export)
        self.view = LocalView(self.export)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


def ninep_command() -> list[str]:
    exe = shutil.which("ninep")
    return [exe] if exe else [sys.executable, "-m", "ninep_server"]


class NinepServer(Server):
    """`ninep serve` on a fresh store, on an ephemeral TCP port and a unix socket."""

    kind = "ninep"

    def __init__(self, workdir: Path, config: str | None = None):
        self.store = workdir / "store"
        self.log_path = workdir / "ninep.log"
        self._sock = workdir / "ninep.sock"
        self._config_path = None
        if config is not None:
            self._config_path = workdir / "ninep.toml"
            self._config_path.write_text(config)
        self.tcp, self.unix = self._start("tcp:127.0.0.1:0")
        self.aname = ""
        self.view = NinepView(self.tcp)
        self._ro_aname: str | None = None

    def _start(self, tcp_listen: str) -> tuple[str, str]:
        """Start `ninep serve`; its tcp and unix addresses once both listen."""
        cmd = ninep_command() + ["serve", "--store", str(self.store),
                                 "--listen", tcp_listen, "--listen", f"unix:{self._sock}"]
        if self._config_path is not None:
            cmd += ["--config", str(self._config_path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.log_path, "ab"), start_new_session=True,
                                     cwd=str(ROOT))
        addresses: list[str] = []
        done = threading.Event()

        def reader():
            for line in self.proc.stdout:   # keep draining: never block the server
                line = line.decode(errors="replace").strip()
                if line.startswith("listening ") and len(addresses) < 2:
                    addresses.append(line.split(None, 1)[1])
                    if len(addresses) == 2:
                        done.set()
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        if not done.wait(60) or len(addresses) < 2:
            hostserver.stop(self.proc)
            raise ServerError(f"`{' '.join(cmd)}` did not report two listeners "
                              f"(got {addresses}); log:\n{self.log_tail()}")
        return (next(a for a in addresses if a.startswith("tcp:")),
                next(a for a in addresses if a.startswith("unix:")))

    def restart(self) -> None:
        """Stop the server, then serve the same store on the same addresses again."""
        hostserver.stop(self.proc)
        tcp, _ = self._start(self.tcp)
        assert tcp == self.tcp, (tcp, self.tcp)

    def kill_and_restart(self, between=None) -> None:
        """SIGKILL the server (no shutdown, no final commit), run ``between()``, then
        serve the same store on the same addresses again."""
        self.proc.kill()
        self.proc.wait()
        if between is not None:
            between()
        tcp, _ = self._start(self.tcp)
        assert tcp == self.tcp, (tcp, self.tcp)

    def read_only_export(self) -> str:
        """Dataset "ro", made read-only (dataset property) after `lockfile` is written."""
        if self._ro_aname is None:
            from ninep_server.commands.backend import RemoteBackend
            admin = RemoteBackend(f"unix:{self.store}/admin.sock")
            try:
                admin.create_dataset("ro")
                NinepView(self.tcp, aname=b"ro")._call(lambda c: c.write_file(b"lockfile", b""))
                admin.set_dataset("ro", {"read_only": True})
            finally:
                admin.close()
            self._ro_aname = "ro"
        return self._ro_aname

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.store, ignore_errors=True)


def start_server(kind: str, workdir: Path, workloads: list[str] = ()) -> Server:
    """A fresh server; for pjdfstest, ninep's export declares the suite's users' groups."""
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "ninep":
        return NinepServer(workdir, pjdfstest.ninep_config() if PJDFSTEST in workloads else None)
    return DiodServer(workdir)


# --------------------------------------------------------------------------
# batched guest runs

@dataclasses.dataclass
class WorkloadResult:
    name: str
    rc: int | None       # None: never finished (boot failed, timeout, crash)
    seconds: float
    output: str
    manifest: str | None


@dataclasses.dataclass
class Batch:
    server: Server
    config: VMConfig
    results: dict[str, WorkloadResult]
    guest: runner.GuestResult | None
    error: str | None


BEGIN_RE = re.compile(r"^@@WL-BEGIN (\S+)@@$", re.M)
END_RE = re.compile(r"^@@WL-END (\S+) (\d+) ([\d.]+)@@$", re.M)


def parse_batch(output: str) -> dict[str, tuple[int | None, float, str]]:
    out = {}
    begins = list(BEGIN_RE.finditer(output))
    for i, m in enumerate(begins):
        name = m.group(1)
        stop = begins[i + 1].start() if i + 1 < len(begins) else len(output)
        segment = output[m.end():stop]
        e = END_RE.search(segment)
        if e and e.group(1) == name:
            out[name] = (int(e.group(2)), float(e.group(3)), segment[:e.start()])
        else:
            out[name] = (None, 0.0, segment)
    return out


def unavailable(why: str):
    """A VM test that cannot run: skipped locally, failed in CI (CI=true)."""
    import pytest
    if IN_CI:
        pytest.fail(f"VM test cannot run in CI: {why}")
    pytest.skip(why)


def pjdfstest_tar() -> Path | None:
    """The pjdfstest guest tarball ($NINEP_EXT_TESTS, else shared/ext-tests beside the clone)."""
    return pjdfstest.tar_path()


def parse_pjdfstest(output: str) -> pjdfstest.Summary | None:
    """The summary of the pjdfstest workload's output, or None when it never finished."""
    return pjdfstest.parse(output)


def run_batch(server: Server, config: VMConfig, workloads: list[str], images: dict,
              log, wl_timeout: int = 420) -> Batch:
    files = {}
    for p in sorted(WORKLOADS_DIR.iterdir()):
        if p.is_file():
            files[f"workloads/{p.name}"] = p.read_bytes()
    if PJDFSTEST in workloads:
        tar = pjdfstest_tar()
        if tar is None:
            raise ServerError(f"{PJDFSTEST_TAR} not found (set NINEP_EXT_TESTS)")
        files[PJDFSTEST_TAR] = tar.read_bytes()
        files["pjdfstest-run.sh"] = pjdfstest.GUEST_RUN.encode()
    uid, gid = test_user()
    env = {"WORKLOADS": " ".join(workloads), "ACCESS": config.access, "CACHE": config.cache,
           "TRANS": config.trans, "TEST_UID": str(uid), "TEST_GID": str(gid),
           "WL_TIMEOUT": str(wl_timeout)}
    if "locks" in workloads:
        env["RO_ANAME"] = server.read_only_export() or ""
    long_ones = {w: t for w, t in WL_TIMEOUTS.items() if w in workloads}
    env.update({f"WL_TIMEOUT_{w}": str(t) for w, t in long_ones.items()})
    address = server.tcp if config.trans == "tcp" else server.fd_address()
    total_timeout = 120 + wl_timeout * (len(workloads) - len(long_ones)) + sum(long_ones.values())
    # Soft budget per boot: a healthy batch takes minutes, not this long
    # (plus the long workloads' own limits).
    budget = int(os.environ.get("NINEP_VM_BOOT_TIMEOUT", "1500")) + sum(long_ones.values())
    total_timeout = min(total_timeout, budget)
    guest = runner.run_guest((WORKLOADS_DIR / "batch.sh").read_bytes(), server=address,
                             transport=config.trans, mount_opts=config.mount_opts,
                             aname=server.aname, fd_ports=8, files=files, env=env,
                             timeout=total_timeout, output=log, images=images)
    parsed = parse_batch(guest.output)
    results = {}
    for name in workloads:
        rc, secs, out = parsed.get(name, (None, 0.0, ""))
        manifest = None
        if rc == 0:
            try:
                manifest = server.view.read(f"wl-{name}.manifest").decode()
            except Exception as e:  # noqa: BLE001 - reported by the test
                manifest = None
                out += f"\n[host] cannot read the manifest: {e!r}"
        results[name] = WorkloadResult(name, rc, secs, out, manifest)
    error = None
    if guest.timed_out:
        error = f"guest timed out after {total_timeout}s"
    elif guest.rc is None:
        error = "guest never printed its exit marker (crash or boot failure)"
    return Batch(server, config, results, guest, error)


# --------------------------------------------------------------------------
# host-side checks

def check_manifest(view, name: str, manifest: str, access: str) -> list[str]:
    """Compare the guest's view of wl-NAME with the host's; return the differences."""
    problems = []
    base = f"wl-{name}"
    seen = set()
    for line in manifest.splitlines():
        if not line:
            continue
        kind, mode, size, uid, gid, nlink, extra, relhex = line.split("\t")
        rel = bytes.fromhex(relhex)
        seen.add(rel)
        path = os.fsencode(base) + b"/" + rel
        shown = rel.decode(errors="replace")
        try:
            st = view.stat(path)
        except Exception as e:  # noqa: BLE001
            problems.append(f"{shown}: host cannot stat: {e!r}")
            continue
        if st.kind != kind:
            problems.append(f"{shown}: type {st.kind} on host, {kind} in guest")
            continue
        if kind != "l" and st.mode != int(mode, 8):
            problems.append(f"{shown}: mode {st.mode:o} on host, {mode} in guest")
        if (st.uid, st.gid) != (int(uid), int(gid)):
            problems.append(f"{shown}: owner {st.uid}:{st.gid} on host, {uid}:{gid} in guest")
        if kind in "fl" and st.size != int(size):
            problems.append(f"{shown}: size {st.size} on host, {size} in guest")
        if kind == "f" and st.nlink != int(nlink):
            problems.append(f"{shown}: nlink {st.nlink} on host, {nlink} in guest")
        if kind == "f" and extra != "-":
            got = hashlib.sha256(view.read(path)).hexdigest()
            if got != extra:
                problems.append(f"{shown}: content differs (sha256 {got[:12]} on host, "
                                f"{extra[:12]} in guest)")
        if kind == "l":
            target = view.readlink(path)
            if target != bytes.fromhex(extra):
                problems.append(f"{shown}: symlink -> {target!r} on host, "
                                f"{bytes.fromhex(extra)!r} in guest")
    # and nothing extra on the host side
    host = set()

    def walk(rel: bytes):
        for n in view.listdir(os.fsencode(base) + (b"/" + rel if rel else b"")):
            r = rel + b"/" + n if rel else n
            host.add(r)
            if view.stat(os.fsencode(base) + b"/" + r).kind == "d":
                walk(r)
    try:
        walk(b"")
    except Exception as e:  # noqa: BLE001
        problems.append(f"host cannot list the tree: {e!r}")
    extra_host = sorted(host - seen)
    missing_host = sorted(seen - host)
    if extra_host:
        problems.append(f"on host only: {extra_host[:10]}")
    if missing_host:
        problems.append(f"in guest only: {missing_host[:10]}")
    return problems


def bigfile_pattern_sha256(size: int = 64 << 20) -> str:
    unit = b"ninep vm bigfile 0123456789abcdef\n"
    data = unit * (size // len(unit) + 1)
    return hashlib.sha256(data[:size]).hexdigest()
