#!/usr/bin/env python3
"""Build the guest images for the ninep VM tests, only from Debian packages.

Outputs, in the cache directory ($NINEP_VM_CACHE, default ~/.cache/ninep-vm):

    kernel/<version>/vmlinux          uncompressed kernel (boots fast under TCG)
    kernel/<version>/root/            the package's files, depmod'ed
    initramfs.cpio                    busybox-static + 9p/virtio modules + guest/ scripts
    rootfs.ext4                       Debian bookworm minbase + workload tools
    images.json                       paths and versions of the above

Every step is idempotent: an output is rebuilt only when its inputs (this
file's recipe, the guest/ scripts, the package versions) change.  Builds run
under a lock in the cache directory, so concurrent test runs do not race.

Usage:  python3 vm-images/build.py [--cache DIR] [--force] [--no-install]
"""
from __future__ import annotations

import argparse
import configparser
import fcntl
import hashlib
import json
import lzma
import gzip
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUEST_DIR = HERE / "guest"

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Tools the workloads need; minbase already has coreutils, tar, diffutils,
# findutils, util-linux (flock, setpriv, unshare), grep, sed.
# acl: setfacl/getfacl (the acl workload); minbase's tar and cp already handle ACLs.
ROOTFS_INCLUDE = ["git", "attr", "acl", "sqlite3", "python3-minimal"]
ROOTFS_RECIPE_VERSION = "1"
# The container image (tests/vm/test_containers.py, issue 18): the same
# userland plus rootful Podman. A separate image, built only when a container
# test runs, so the other kernel tests keep their smaller rootfs. debootstrap
# resolves only Depends: podman needs a network stack package named
# explicitly (netavark), although the tests run containers with --network=none.
# podman-compose is not Debian's (1.0.3 drops a volume's driver_opts and puts
# every service on a bridge network even with network_mode: none) but the
# pinned PyPI wheel below; python3-yaml and python3-dotenv are its imports.
CONTAINERS_INCLUDE = ROOTFS_INCLUDE + [
    "podman", "crun", "conmon", "netavark", "aardvark-dns", "socat",
    "python3-yaml", "python3-dotenv",
]
# Pure-Python wheels from PyPI installed into that image: name -> (version, sha256).
CONTAINERS_WHEELS = {
    "podman-compose": ("1.6.0",
                       "98e48af25d44c10ecef948163bfcca002e32aa8bbb7e66593fbd4faff7270c30"),
}
CONTAINERS_RECIPE_VERSION = "2"
# Podman's configuration in that image (see vm-images/README.md, Containers).
CONTAINERS_FILES = {
    # vfs: plain copies, works on any filesystem (the guest's root is an
    # overlay over tmpfs, which overlayfs cannot take as its upper layer).
    "etc/containers/storage.conf": """\
[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
""",
    # No systemd, no journald, no bridge: cgroupfs, a file event log, no
    # network namespace plumbing (9p is mounted by podman in the guest's own
    # namespace, before the container starts). The guest's root is still the
    # initramfs (the init chroots), where pivot_root(2) fails: no_pivot_root.
    "etc/containers/containers.conf": """\
[containers]
netns = "none"
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "crun"
no_pivot_root = true

[network]
network_backend = "netavark"
""",
    "etc/containers/policy.json": '{"default": [{"type": "insecureAcceptAnything"}]}\n',
}
# Docker (tests/vm/test_docker.py): its own image, so the Podman one stays as
# it is. dockerd without iptables or a bridge, vfs storage, cgroupfs.
DOCKER_INCLUDE = ROOTFS_INCLUDE + ["docker.io", "docker-compose"]
DOCKER_RECIPE_VERSION = "1"
DOCKER_FILES = {
    "etc/docker/daemon.json": json.dumps({
        "storage-driver": "vfs", "iptables": False, "ip6tables": False, "bridge": "none",
        "exec-opts": ["native.cgroupdriver=cgroupfs"], "log-driver": "json-file",
    }, indent=2) + "\n",
}
INITRAMFS_RECIPE_VERSION = "1"

# Modules loaded by the initramfs, dependencies first (modprobe resolves them).
MODULES = [
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_console",
    "ext4", "overlay",
    "9p", "9pnet_fd", "9pnet_virtio",
]

# Host commands -> Debian package providing them.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "debootstrap": "debootstrap",
    "depmod": "kmod",
    "modprobe": "kmod",
    "mke2fs": "e2fsprogs",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
}
BUSYBOX_STATIC = Path("/bin/busybox")


def log(msg: str) -> None:
    print(f"[vm-images] {msg}", file=sys.stderr, flush=True)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get("NINEP_VM_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(xdg) / "ninep-vm"


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def which(cmd: str) -> str | None:
    return shutil.which(cmd, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


# --------------------------------------------------------------------------
# host packages

_apt_updated = False


def apt_install(packages: list[str]) -> None:
    global _apt_updated
    if not packages:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing host packages {packages} and not root: "
                         f"apt-get install {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        log("apt-get update")
        run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        _apt_updated = True
    log(f"apt-get install {' '.join(packages)}")
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
        env=env, stdout=subprocess.DEVNULL)


def busybox_is_static() -> bool:
    if not BUSYBOX_STATIC.exists():
        return False
    with open(BUSYBOX_STATIC, "rb") as f:
        head = f.read(1 << 16)
    # A dynamic ELF has a PT_INTERP naming the loader.
    return b"/lib64/ld-linux" not in head and b"ld-linux-x86-64" not in head


def ensure_host_tools(extra: list[str] = ()) -> None:
    """Install (with apt-get) whatever host packages are missing."""
    missing = sorted({pkg for cmd, pkg in HOST_TOOLS.items() if not which(cmd)})
    if not busybox_is_static():
        missing.append("busybox-static")
    for pkg in extra:
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                          capture_output=True, text=True).stdout != "install ok installed":
            missing.append(pkg)
    apt_install(sorted(set(missing)))


def apt_env() -> dict:
    return dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def apt_candidate(package: str) -> str | None:
    out = run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            return None if v == "(none)" else v
    return None


def ensure_apt_lists() -> None:
    global _apt_updated
    if apt_candidate("linux-image-amd64") is None and not _apt_updated:
        log("apt-get update (no package lists)")
        run(["apt-get", "update", "-q"], env=apt_env(), stdout=subprocess.DEVNULL)
        _apt_updated = True


# --------------------------------------------------------------------------
# kernel

def kernel_package() -> tuple[str, str]:
    """The versioned linux-image package behind linux-image-amd64."""
    ensure_apt_lists()
    out = run(["apt-cache", "depends", "linux-image-amd64"],
              capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            pkg = line.split(":", 1)[1].strip()
            kver = pkg[len("linux-image-"):]
            return pkg, kver
    raise RuntimeError(f"cannot resolve linux-image-amd64:\n{out}")


def extract_vmlinux(vmlinuz: Path, out: Path) -> None:
    """Find the compressed payload in a bzImage and decompress it to an ELF.

    Scans for the gzip/xz/zstd magics and keeps the first candidate that
    decompresses to something starting with the ELF magic.
    """
    data = vmlinuz.read_bytes()
    magics = [
        (b"\xfd7zXZ\x00", "xz"),
        (b"\x1f\x8b\x08", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
    ]
    for magic, kind in magics:
        pos = data.find(magic)
        while pos != -1:
            blob = data[pos:]
            elf = None
            try:
                if kind == "xz":
                    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
                elif kind == "gzip":
                    elf = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
                elif kind == "zstd" and which("zstd"):
                    elf = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True).stdout
            except (lzma.LZMAError, zlib.error, EOFError):
                elf = None
            if elf and elf[:4] == b"\x7fELF":
                out.write_bytes(elf)
                log(f"extracted vmlinux ({kind} at offset {pos}, {len(elf) >> 20} MiB)")
                return
            pos = data.find(magic, pos + 1)
    raise RuntimeError(f"no compressed ELF kernel found in {vmlinuz}")


def build_kernel(cache: Path, force: bool = False) -> dict:
    pkg, kver = kernel_package()
    version = apt_candidate(pkg) or "unknown"
    kdir = cache / "kernel" / kver
    stamp = kdir / "stamp.json"
    want = {"package": pkg, "version": version, "kver": kver}
    if not force and stamp.exists() and json.loads(stamp.read_text()) == want \
            and (kdir / "vmlinux").exists():
        return dict(want, dir=str(kdir))
    log(f"building kernel from {pkg} {version}")
    tmp = Path(tempfile.mkdtemp(prefix="kernel.", dir=cache))
    try:
        run(["apt-get", "download", "-q", pkg], cwd=tmp, env=apt_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        debs = list(tmp.glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {pkg} gave {debs}")
        root = tmp / "root"
        run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        debs[0].unlink()
        run(["depmod", "-b", str(root), kver])
        extract_vmlinux(root / "boot" / f"vmlinuz-{kver}", tmp / "vmlinux")
        (tmp / "stamp.json").write_text(json.dumps(want))
        if kdir.exists():
            shutil.rmtree(kdir)
        kdir.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(kdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dict(want, dir=str(kdir))


def module_load_order(kroot: Path, kver: str) -> list[Path]:
    out = run(["modprobe", "-d", str(kroot), "-S", kver, "-a", "--show-depends", *MODULES],
              capture_output=True, text=True).stdout
    seen, order = set(), []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "insmod":
            p = Path(parts[1])
            if p not in seen:
                seen.add(p)
                order.append(p)
    if not any(p.name == "9p.ko" for p in order):
        raise RuntimeError(f"modprobe did not resolve 9p:\n{out}")
    return order


# --------------------------------------------------------------------------
# initramfs (cpio newc, written here so no cpio tool is needed)

class Cpio:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.ino = 1000

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)) -> None:
        name_b = name.encode() + b"\0"
        self.ino += 1
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_b), 0]
        self.buf += b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf += name_b
        self.buf += b"\0" * (-len(self.buf) % 4)
        self.buf += data
        self.buf += b"\0" * (-len(self.buf) % 4)

    def dir(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, stat.S_IFDIR | perm)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf += b"\0" * (-len(self.buf) % 512)
        return bytes(self.buf)


def guest_files() -> dict[str, tuple[bytes, int]]:
    """vm-images/guest/* -> /opt/ninep/* in the guest."""
    files = {}
    for p in sorted(GUEST_DIR.iterdir()):
        if p.is_file():
            files[p.name] = (p.read_bytes(), 0o755 if os.access(p, os.X_OK) else 0o644)
    return files


def build_initramfs(cache: Path, kernel: dict, force: bool = False) -> Path:
    kroot = Path(kernel["dir"]) / "root"
    kver = kernel["kver"]
    mods = module_load_order(kroot, kver)
    h = hashlib.sha256()
    h.update(INITRAMFS_RECIPE_VERSION.encode())
    h.update(json.dumps(kernel, sort_keys=True).encode())
    h.update(BUSYBOX_STATIC.read_bytes())
    for name, (data, mode) in guest_files().items():
        h.update(name.encode() + b"\0" + data + b"%o" % mode)
    digest = h.hexdigest()
    out = cache / "initramfs.cpio"
    stamp = cache / "initramfs.stamp"
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        return out
    log(f"building initramfs ({len(mods)} modules)")
    c = Cpio()
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "lib",
              "lib/modules", "newroot", "lower", "rw", "opt", "opt/ninep", "job"]:
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    c.file("bin/busybox", BUSYBOX_STATIC.read_bytes(), 0o755)
    c.symlink("bin/sh", "busybox")
    order = []
    for p in mods:
        c.file(f"lib/modules/{p.name}", p.read_bytes())
        order.append(p.name)
    c.file("etc/modules.order", ("\n".join(order) + "\n").encode())
    c.file("etc/kernel-version", (kver + "\n").encode())
    for name, (data, mode) in guest_files().items():
        c.file(f"opt/ninep/{name}", data, mode)
    c.symlink("init", "opt/ninep/init")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(c.finish())
    tmp.rename(out)
    stamp.write_text(digest)
    return out


# --------------------------------------------------------------------------
# Debian userland

def pypi_wheel(cache: Path, name: str, version: str, sha256: str) -> Path:
    """The pure-Python wheel NAME==VERSION from PyPI (pip download), checked against sha256."""
    wdir = cache / "wheels"
    wdir.mkdir(parents=True, exist_ok=True)
    pattern = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    whl = wdir / pattern
    if not whl.exists():
        log(f"pip download {name}=={version}")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:",
             "-d", str(wdir), f"{name}=={version}"])
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    if digest != sha256:
        whl.unlink()
        raise RuntimeError(f"{whl.name}: sha256 {digest}, pinned {sha256}")
    return whl


def install_wheel(root: Path, whl: Path) -> None:
    """Unpack a pure-Python wheel into ROOT's dist-packages, with its console scripts."""
    site = root / "usr/lib/python3/dist-packages"
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
        entry = next((n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")), None)
        scripts = configparser.ConfigParser()
        if entry:
            scripts.read_string(z.read(entry).decode())
    if scripts.has_section("console_scripts"):
        for cmd, target in scripts.items("console_scripts"):
            module, func = target.split(":")
            path = root / "usr/bin" / cmd
            path.write_text(f"#!/usr/bin/python3\nimport sys\nfrom {module} import {func}\n"
                            f"sys.exit({func}())\n")
            path.chmod(0o755)


def build_rootfs(cache: Path, force: bool = False, mirror: str | None = None,
                 name: str = "rootfs", include: list[str] = ROOTFS_INCLUDE,
                 files: dict[str, str] | None = None,
                 recipe: str = ROOTFS_RECIPE_VERSION,
                 wheels: dict[str, tuple[str, str]] | None = None) -> Path:
    """debootstrap minbase + `include`, plus `files` (path -> text) and the pinned
    PyPI `wheels` (name -> (version, sha256)), as NAME.ext4."""
    mirror = mirror or os.environ.get("NINEP_VM_MIRROR", DEFAULT_MIRROR)
    out = cache / f"{name}.ext4"
    stamp = cache / f"{name}.stamp"
    spec = {"suite": SUITE, "include": include, "recipe": recipe}
    if files:
        spec["files"] = files
    if wheels:
        spec["wheels"] = wheels
    want = json.dumps(spec)
    if not force and out.exists() and stamp.exists() and stamp.read_text() == want:
        return out
    log(f"building {name}: debootstrap --variant=minbase {SUITE} (+{','.join(include)})")
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="rootfs.", dir=cache))
    try:
        root = tmp / "root"
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(include)}",
             SUITE, str(root), mirror],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            tail = r.stdout[-4000:]
            debootstrap_log = root / "debootstrap" / "debootstrap.log"
            if debootstrap_log.exists():
                tail += "\n--- debootstrap.log ---\n" + debootstrap_log.read_text()[-4000:]
            raise RuntimeError(f"debootstrap failed:\n{tail}")
        log(f"debootstrap took {time.monotonic() - t0:.0f}s")
        # Trim: package caches, docs, locales. Keeps the image small.
        for sub in ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc",
                    "usr/share/man", "usr/share/locale", "usr/share/info"]:
            d = root / sub
            if d.is_dir():
                for child in d.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        for d in ["mnt/9p", "mnt/a", "mnt/b", "mnt/c", "opt/ninep", "job"]:
            (root / d).mkdir(parents=True, exist_ok=True)
        # A non-root user for permission tests.
        with open(root / "etc/passwd", "a") as f:
            f.write("tester:x:1000:1000:tester:/tmp:/bin/sh\n")
        with open(root / "etc/group", "a") as f:
            f.write("tester:x:1000:\n")
        for rel, text in (files or {}).items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        for wname, (version, sha256) in (wheels or {}).items():
            install_wheel(root, pypi_wheel(cache, wname, version, sha256))
        size_kib = int(run(["du", "-sk", "--apparent-size", str(root)], capture_output=True,
                           text=True).stdout.split()[0])
        size_mib = size_kib // 1024 + 96
        img = tmp / "rootfs.ext4"
        run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", "ninep-root", "-E", "root_owner=0:0",
             "-d", str(root), str(img), f"{size_mib}M"], stdout=subprocess.DEVNULL)
        img.rename(out)
        stamp.write_text(want)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name} built in {time.monotonic() - t0:.0f}s")
    return out


def _build_locked_rootfs(cache: Path | None, force: bool, **recipe) -> Path:
    """build_rootfs(**recipe) under the cache lock (images built on first use)."""
    cache = cache_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        return build_rootfs(cache, force, **recipe)


def build_containers_rootfs(cache: Path | None = None, force: bool = False) -> Path:
    """rootfs-containers.ext4: the rootfs plus rootful Podman (built on first use)."""
    return _build_locked_rootfs(cache, force, name="rootfs-containers", include=CONTAINERS_INCLUDE,
                                files=CONTAINERS_FILES, recipe=CONTAINERS_RECIPE_VERSION,
                                wheels=CONTAINERS_WHEELS)


def build_docker_rootfs(cache: Path | None = None, force: bool = False) -> Path:
    """rootfs-docker.ext4: the rootfs plus Debian's docker.io (built on first use)."""
    return _build_locked_rootfs(cache, force, name="rootfs-docker", include=DOCKER_INCLUDE,
                                files=DOCKER_FILES, recipe=DOCKER_RECIPE_VERSION)


# --------------------------------------------------------------------------

def build_all(cache: Path | None = None, force: bool = False, install: bool = True) -> dict:
    cache = cache_dir(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if install:
        ensure_host_tools()
    with open(cache / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        t0 = time.monotonic()
        kernel = build_kernel(cache, force)
        initramfs = build_initramfs(cache, kernel, force)
        rootfs = build_rootfs(cache, force)
        info = {
            "cache": str(cache),
            "kver": kernel["kver"],
            "kernel_package": f"{kernel['package']} {kernel['version']}",
            "vmlinux": str(Path(kernel["dir"]) / "vmlinux"),
            "initramfs": str(initramfs),
            "rootfs": str(rootfs),
        }
        (cache / "images.json").write_text(json.dumps(info, indent=2) + "\n")
        dt = time.monotonic() - t0
        if dt > 1:
            log(f"images ready in {dt:.0f}s")
        return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", help="cache directory (default $NINEP_VM_CACHE or ~/.cache/ninep-vm)")
    ap.add_argument("--force", action="store_true", help="rebuild everything")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install host tools")
    args = ap.parse_args(argv)
    info = build_all(args.cache, force=args.force, install=not args.no_install)
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
