"""``ninep volume``: datasets as Podman and Docker volumes.

The runtimes need no plugin: their built-in ``local`` volume driver passes
``type``, ``device`` and ``o`` to mount(2) (Docker) or mount(8) (Podman), and
the Linux v9fs client does the rest. This command creates the dataset and
prints the ``volume create`` commands with the server's address in them.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
from dataclasses import dataclass

from cas import FsError

from ..address import Address, parse_address
from ..config import ConfigError, ServerConfig, load_config
from .backend import answering_socket, backend
from .common import CommandError, add_store_option, describe, print_json
from .dataset import parse_property
from .output import human

# What every printed mount uses, and what the kernel tests run (tests/vm):
MOUNT_OPTIONS = "version=9p2000.L,msize=512000,access=user,cache=none"
RUNTIMES = ("podman", "docker")

HELP = """\
A volume is a dataset (one independent file tree, its name the 9P aname)
that Podman or Docker mounts with its built-in "local" driver. There is no
plugin: the runtime hands type=9p, the device and the options to the Linux
9p client. The commands go through the running server when there is one,
and open the store otherwise.

examples:
  ninep volume create web --quota 10G       # prints the podman and docker commands
  sudo podman volume create --driver local --opt type=9p ...   # the printed line
  sudo podman run --rm -v web:/data debian ls /data
  ninep volume list
  ninep volume delete web                   # refused while a client has it attached

the printed options (o=...):
  trans=tcp,port=PORT  connect to device=IPV4 on PORT; v9fs takes only an
                       IPv4 literal here: no host name, no IPv6 address
  trans=unix           device=/path/to.sock: a unix socket of the server on the
                       container host; no network, and only the socket's owner
                       and root connect (mode 0600 unless unix_socket_mode)
  version=9p2000.L     the Linux dialect ninep speaks
  msize=512000         largest 9P message; what the kernel tests use (the server
                       accepts up to 1 MiB on tcp and unix)
  access=user          each container uid attaches as itself, so files get the
                       container's uids and the export's squash settings decide
                       what root in a container may do
  cache=none           no client cache: the host, other mounts and snapshots
                       always see the same files (cache=loose is faster for
                       read-only data that never changes behind the mount)
  aname=NAME           the dataset; it selects, it does not authorize: the
                       export's allow, read_only and squash settings do

where the address comes from:
  a running server: its listeners (`ninep status`), the first that v9fs can
  use; a stopped store: --address, else [server] listen in --config. A
  wildcard listener (tcp:0.0.0.0:PORT) needs --address with the address the
  container host reaches the server at: tcp:127.0.0.1:PORT on this host (the
  runtime mounts from the host's network namespace), tcp:10.0.2.2:PORT in a
  QEMU user-network guest, the server's LAN address from elsewhere. Serve on
  a fixed port: port 0 picks another one at every start, and the volume keeps
  the one it was created with.

limits:
  - mounting 9p needs root in the initial user namespace: rootful Podman and
    Docker can, rootless Podman cannot (use sudo podman, or a bind mount of a
    9p mount made by root: -v /mnt/web:/data)
  - the client does not reconnect: after the server restarts, a mounted volume
    returns errors until the runtime mounts it again (restart the container)
"""


@dataclass(frozen=True)
class VolumeSpec:
    """The local-driver options that mount dataset ``name`` from ``address``."""

    name: str
    address: Address

    @property
    def device(self) -> str:
        return self.address.path if self.address.kind == "unix" else self.address.host

    @property
    def options(self) -> str:
        if self.address.kind == "unix":
            trans = "trans=unix"
        else:
            trans = f"trans=tcp,port={self.address.port}"
        return f"{trans},{MOUNT_OPTIONS},aname={self.name}"

    def command(self, runtime: str) -> str:
        """``podman volume create ...`` (or docker): one shell-quoted line."""
        opts = ["type=9p", f"device={self.device}", f"o={self.options}"]
        argv = [runtime, "volume", "create", "--driver", "local"]
        for opt in opts:
            argv += ["--opt", opt]
        return shlex.join([*argv, self.name])


def unusable(address: Address) -> str | None:
    """Why v9fs cannot mount ``address``, or None when it can."""
    if address.kind == "unix":
        if not address.path.startswith("/"):
            return f"{address} is a relative path; the runtime needs the socket's absolute path"
        return None
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return f"{address}: v9fs takes only an IPv4 literal for trans=tcp, not a host name"
    if ip.version == 6:
        return f"{address}: v9fs takes only an IPv4 literal for trans=tcp, not an IPv6 address"
    if ip.is_unspecified:
        return (f"{address} is a wildcard (every address), not one a client can connect to; pass the address "
                f"the container host reaches the server at, e.g. --address tcp:127.0.0.1:{address.port} on this "
                f"host, tcp:10.0.2.2:{address.port} in a QEMU user-network guest, or the host's LAN address")
    if address.port == 0:
        return f"{address}: port 0 is not a port a client can connect to; give the server's fixed port"
    return None


def choose_address(candidates: list[Address], where: str) -> Address:
    """The first address of ``candidates`` that v9fs can mount; CommandError naming why not."""
    if not candidates:
        raise CommandError(f"{where} lists no address: pass --address tcp:IPV4:PORT or unix:/PATH")
    reasons = []
    for address in candidates:
        reason = unusable(address)
        if reason is None:
            return address
        reasons.append(reason)
    raise CommandError(f"{where} has no address v9fs can mount: " + "; ".join(reasons))


def _address_arg(text: str) -> Address:
    try:
        address = parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    reason = unusable(address)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return address


def _size(text: str) -> int:
    try:
        return parse_property(f"quota={text}")[1]
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("volume", help="datasets as Podman and Docker volumes (9p with the local driver)",
                            description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = parser.add_subparsers(dest="volume_command", metavar="ACTION", required=True)
    p = cmds.add_parser("create", help="create a dataset and print the podman and docker commands for it",
                        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--quota", type=_size, metavar="SIZE", help="cap the volume's bytes: 10G, 500M, 4096")
    p.add_argument("--read-only", action="store_true", help="refuse every change through 9P (EROFS)")
    p.add_argument("--address", type=_address_arg, metavar="ADDR",
                   help="where the container host reaches the server: tcp:IPV4:PORT or unix:/PATH "
                        "(default: the running server's first usable listener, else [server] listen in --config)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_create)
    p = cmds.add_parser("list", help="list volumes: size (the live files' bytes, as du -b), quota, snapshots")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)
    p = cmds.add_parser("delete", help="delete a volume's dataset and everything in it")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_delete)
    for action in cmds.choices.values():
        add_store_option(action)


def _config(path: str | None) -> ServerConfig | None:
    if not path:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def _call(what: str, fn):
    try:
        return fn()
    except FsError as exc:
        raise CommandError(f"{what}: {describe(exc)}") from None


def _create(args) -> int:
    config = _config(args.config)
    if not args.admin and config and config.admin_socket:
        args.admin = answering_socket(config.admin_socket)
    with backend(args, create=True) as be:
        if args.address:
            address = args.address
        elif be.remote:
            status = be.status()
            address = choose_address([parse_address(a) for a in status["listening"]], "the running server")
        else:
            if not (config and config.listen):
                unset = f" and {args.config} sets no [server] listen" if config else ""
                raise CommandError(f"no server is running for {args.store}{unset}: pass --address tcp:IPV4:PORT "
                                   "or unix:/PATH, or --config with the server's [server] listen")
            address = choose_address(list(config.listen), f"[server] listen in {args.config}")
        what = f"cannot create volume {args.name!r}"
        _call(what, lambda: be.create_dataset(args.name))
        props = {k: v for k, v in (("quota", args.quota), ("read_only", args.read_only or None)) if v is not None}
        row = _call(what, lambda: be.set_dataset(args.name, props)) if props else None
        exported = _exported(be, config, args.name)
    spec = VolumeSpec(args.name, address)
    commands = {runtime: spec.command(runtime) for runtime in RUNTIMES}
    if args.json:
        print_json({"volume": args.name, "address": str(address), "driver": "local",
                    "options": {"type": "9p", "device": spec.device, "o": spec.options},
                    "quota": args.quota or 0, "read_only": args.read_only, "exported": exported, **commands})
        return 0
    extra = [f"quota {human(row['quota'])}" if row and row["quota"] else "", "read-only" if args.read_only else ""]
    extra = [e for e in extra if e]
    print(f"# created volume {args.name} on {address}" + (f" ({', '.join(extra)})" if extra else ""))
    if not exported:
        print(f"# warning: the server does not export {args.name} (export_unlisted = false): "
              f"add [exports.{args.name}] to its configuration and restart it")
    print("# as root (rootless podman cannot mount 9p):")
    for line in commands.values():
        print(line)
    print(f"# then: podman run --rm -v {args.name}:/data IMAGE  (docker run likewise)")
    return 0


def _exported(be, config: ServerConfig | None, name: str) -> bool:
    """Whether the server serves ``name`` (export_unlisted = false hides new datasets)."""
    if be.remote:
        return any(e["name"] == name for e in be.status()["exports"])
    return (config or ServerConfig()).export(name) is not None


def _list(args) -> int:
    with backend(args) as be:
        rows = _call("cannot list volumes", be.list_datasets)
        sizes = {d["name"]: d["logical_bytes"] for d in _call("cannot list volumes", be.stats)["datasets"]}
    volumes = [{"name": r["name"], "bytes": sizes.get(r["name"], 0), "snapshots": r["snapshots"],
                "quota": r["quota"], "read_only": r["read_only"]} for r in rows]
    if args.json:
        print_json(volumes)
        return 0
    if not volumes:
        print("no volumes")
        return 0
    width = max(len("VOLUME"), *(len(v["name"]) for v in volumes))
    print(f"{'VOLUME':<{width}}  {'SIZE':>10}  {'QUOTA':>10}  SNAPSHOTS  MODE")
    for v in volumes:
        quota = human(v["quota"]) if v["quota"] else "-"
        mode = "ro" if v["read_only"] else "rw"
        print(f"{v['name']:<{width}}  {human(v['bytes']):>10}  {quota:>10}  {v['snapshots']:<9}  {mode}")
    return 0


def _delete(args) -> int:
    with backend(args) as be:
        _call(f"cannot delete volume {args.name!r}", lambda: be.delete_dataset(args.name))
    if args.json:
        print_json({"deleted": args.name})
        return 0
    print(f"deleted volume {args.name}")
    print(f"# the runtimes still list it: podman volume rm {args.name}; docker volume rm {args.name}")
    return 0
