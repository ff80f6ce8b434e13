"""The free-space reserve is set from the configuration or `ninep serve --free-space-reserve`."""

import errno
import os

import pytest
import trio

from ninep_server import protocol as p
from ninep_server.client import NinepError, connect
from ninep_server.config import ConfigError, Reserve, ServerConfig, parse_config, parse_reserve

from ..servers import start_ninep


def test_parse_reserve_sizes_and_percentages(tmp_path):
    assert ServerConfig().free_space_reserve.resolve(str(tmp_path)) == 64 << 20
    assert parse_reserve("256M") == Reserve(nbytes=256 << 20)
    assert parse_reserve("1G") == parse_reserve("1GiB") == Reserve(nbytes=1 << 30)
    assert parse_reserve("4096") == parse_reserve(4096) == Reserve(nbytes=4096)
    assert parse_reserve(0).resolve(str(tmp_path)) == 0
    st = os.statvfs(tmp_path)
    assert parse_reserve("5%").resolve(str(tmp_path / "not" / "made" / "yet")) == int(
        st.f_blocks * st.f_frsize * 5 / 100)
    assert parse_reserve("100%").resolve(str(tmp_path)) == st.f_blocks * st.f_frsize
    for bad in ("-1", "5X", "101%", "", "lots", True, -4, 2.5):
        with pytest.raises(ValueError):
            parse_reserve(bad)
    cfg = parse_config({"server": {"free_space_reserve": "2%"}})
    assert cfg.free_space_reserve == Reserve(nbytes=None, percent=2.0)
    with pytest.raises(ConfigError, match="free_space_reserve"):
        parse_config({"server": {"free_space_reserve": "much"}})


async def _write_and_statfs(address: str) -> tuple[int | None, p.Rstatfs]:
    """(errno of a 64 KiB write, or None if it worked; the root's Tstatfs)."""
    async with connect(address, uname=b"root", n_uname=0) as c:
        st = await c.statfs(c.root_fid)
        try:
            await c.write_file(b"f", os.urandom(65536), fsync=True)
        except NinepError as exc:
            return exc.errno, st
        return None, st


def _run(store, *args):
    server = start_ninep(store, *args)
    try:
        return trio.run(_write_and_statfs, server.address)
    finally:
        server.stop()


def test_reserve_reaches_the_store_from_cli_and_config(tmp_path):
    # 100% of the filesystem can never be free: every write is ENOSPC, nothing is available
    code, st = _run(tmp_path / "a", "--free-space-reserve", "100%")
    assert code == errno.ENOSPC and st.bavail == 0 and st.bfree == 0
    # from the configuration file
    conf = tmp_path / "ninep.toml"
    conf.write_text('[server]\nfree_space_reserve = "100%"\n')
    code, st = _run(tmp_path / "b", "--config", str(conf))
    assert code == errno.ENOSPC and st.bavail == 0
    # the command line overrides the file; with no reserve, Tstatfs shows the disk's own free space
    code, st = _run(tmp_path / "b", "--config", str(conf), "--free-space-reserve", "0")
    assert code is None and st.bavail > 0
    disk = os.statvfs(tmp_path)
    assert st.blocks == disk.f_blocks and st.bsize == disk.f_bsize
    # an absolute reserve above the free space refuses writes too
    huge = f"{(disk.f_blocks * disk.f_frsize) >> 20}M"
    conf.write_text(f'[server]\nfree_space_reserve = "{huge}"\n')
    code, st = _run(tmp_path / "c", "--config", str(conf))
    assert code == errno.ENOSPC and st.bavail == 0


@pytest.mark.parametrize("key, option", [("chunk_memory", "chunk_memory_bytes"),
                                         ("metadata_memory", "cache_bytes")])
def test_memory_sizes_from_config_and_the_command_line(key, option):
    """[server] chunk_memory / metadata_memory become Store.open options, and
    `ninep serve --chunk-memory / --metadata-memory` override them."""
    from ninep_server.cli import build_parser
    from ninep_server.storeopen import open_options

    config = parse_config({"server": {key: "64M"}})
    assert getattr(config, key) == 64 << 20
    assert open_options(config)[option] == 64 << 20
    assert option not in open_options(parse_config({}))
    with pytest.raises(ConfigError, match=key):
        parse_config({"server": {key: "lots"}})
    flag = "--" + key.replace("_", "-")
    assert getattr(build_parser().parse_args(["serve", flag, "1G"]), key) == 1 << 30
    assert getattr(build_parser().parse_args(["serve"]), key) is None   # the config's, else the default
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", flag, "lots"])


def test_chunk_memory_bounds_the_store_it_opens(tmp_path):
    """[server] chunk_memory bounds the memory cache of verified chunks of the store it opens."""
    from cas import Store
    from ninep_server.storeopen import open_options

    config = parse_config({"server": {"chunk_memory": "64M"}})
    store = Store.open(str(tmp_path / "s"), create=True, **open_options(config))
    try:
        assert store.chunks.stats().memory_limit == 64 << 20
    finally:
        store.close()
    store = Store.open(str(tmp_path / "s"))
    try:
        assert store.chunks.stats().memory_limit == 256 << 20   # the default
    finally:
        store.close()


def test_metadata_memory_bounds_each_datasets_cache(tmp_path):
    """[server] metadata_memory (and `ninep serve --metadata-memory`) bounds each dataset's
    metadata cache: its inode records and its compact rows (cas/inodes.py) together."""
    import json

    from cas import Store
    from cas.store import RECORD_SHARE
    from ninep_server.storeopen import open_options

    config = parse_config({"server": {"metadata_memory": "32M"}})
    with Store.open(str(tmp_path / "s"), create=True, **open_options(config)) as store:
        c = store.commits
        assert c.record_bytes == (32 << 20) // RECORD_SHARE
        assert c.record_bytes + c.row_bytes == 32 << 20
    server = start_ninep(tmp_path / "served", "--metadata-memory", "8M")
    server.stop()
    serving = [json.loads(line) for line in server.proc.stderr.read().splitlines()
               if '"serving"' in line]
    assert [e["metadata_memory"] for e in serving] == [8 << 20]
