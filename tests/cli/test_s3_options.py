"""The object-storage options without a bucket: the [s3] table and [server] chunks of the
configuration file, `ninep init` on a local store, and what --help teaches."""

from __future__ import annotations

import os

import pytest

from ninep_server.config import ConfigError, S3Config, parse_chunks, parse_config, parse_size
from ninep_server.storeopen import open_options

from ..server.s3util import ninep

SECRET = "file-secret-do-not-show"


def test_s3_table_and_chunks_are_parsed():
    cfg = parse_config({"server": {"chunks": "s3://my-bucket/ninep/a"},
                        "s3": {"endpoint": "http://127.0.0.1:8333", "region": "us-east-1",
                               "access_key_id": "key", "secret_access_key": SECRET,
                               "allow_http": True, "cache_size": "512M"}})
    assert cfg.chunks == "s3://my-bucket/ninep/a"
    assert cfg.s3.cache_size == 512 << 20
    assert cfg.s3.file_values() == {"endpoint": "http://127.0.0.1:8333", "region": "us-east-1",
                                    "access_key_id": "key", "secret_access_key": SECRET, "allow_http": True}
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.s3)
    assert parse_config({}).s3 == S3Config() and parse_config({}).chunks is None


@pytest.mark.parametrize("data, words", [
    ({"s3": {"secret": "x"}}, "unknown key(s) s3.['secret']"),
    ({"s3": {"allow_http": "yes"}}, "s3.allow_http must be true or false"),
    ({"s3": {"endpoint": 3}}, "s3.endpoint must be a non-empty string"),
    ({"s3": {"cache_size": "lots"}}, "s3.cache_size is a byte count"),
    ({"s3": {"pool_refresh": 0}}, "s3.pool_refresh must be a number of seconds > 0"),
    ({"s3": {"pool_grace": -1}}, "s3.pool_grace must be a number of seconds >= 0"),
    ({"s3": {"pool_grace": "1h"}}, "s3.pool_grace must be a number of seconds >= 0"),
    ({"s3": {"pool_grace": float("nan")}}, "s3.pool_grace must be a number of seconds >= 0"),
    ({"s3": {"pool_refresh": float("inf")}}, "s3.pool_refresh must be a number of seconds > 0"),
    ({"server": {"chunks": "/var/chunks"}}, "server.chunks: a chunk location is s3://BUCKET/PREFIX"),
    ({"server": {"chunks": "s3://Upper/x"}}, "server.chunks: a chunk location is s3://BUCKET/PREFIX"),
])
def test_bad_s3_settings_are_refused_precisely(data, words):
    with pytest.raises(ConfigError) as exc:
        parse_config(data, source="ninep.toml")
    assert words in str(exc.value) and str(exc.value).startswith("ninep.toml: ")


def test_chunk_locations_and_sizes():
    assert parse_chunks("s3://bucket") == "s3://bucket"
    assert parse_chunks("s3://b.c-d/p/q") == "s3://b.c-d/p/q"
    for bad in ("s3://", "s3://ab", "S3://bucket", "s3:/bucket", "file:///x", ""):
        with pytest.raises(ValueError):
            parse_chunks(bad)
    assert parse_size("4M") == 4 << 20 and parse_size(4096) == 4096 and parse_size("1GiB") == 1 << 30
    with pytest.raises(ValueError):
        parse_size(-1)


def test_pool_settings_reach_store_open():
    cfg = parse_config({"s3": {"pool_refresh": 60, "pool_grace": 0}})
    assert open_options(cfg) == {"pool_refresh": 60.0, "pool_grace": 0.0}


def test_open_options_leave_local_stores_alone():
    """No [s3] settings and no chunk location: Store.open gets nothing new."""
    assert open_options(parse_config({})) == {}
    assert open_options(parse_config({}), chunks="s3://b-1/p", chunk_size=1 << 20) == {
        "chunks": "s3://b-1/p", "chunk_size": 1 << 20}
    assert open_options(parse_config({"server": {"chunks": "s3://b-1/q"}}), chunks="s3://b-1/p")["chunks"] == "s3://b-1/p"
    assert open_options(parse_config({"s3": {"cache_size": "1M"}})) == {"chunk_cache_bytes": 1 << 20}


def test_environment_takes_precedence_over_the_file(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    cfg = parse_config({"s3": {"endpoint": "http://file:1", "region": "eu-west-1", "secret_access_key": SECRET}})
    s3 = open_options(cfg)["s3"]
    assert s3.endpoint == "http://127.0.0.1:9" and s3.region == "eu-west-1"
    assert s3.secret_access_key.get_secret_value() == SECRET
    assert SECRET not in repr(s3) and SECRET not in str(s3)


def test_init_creates_a_local_store_once(tmp_path):
    store = tmp_path / "store"
    r = ninep("init", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"created store {store} with dataset main\n"
                        f"  chunks: local:{store}/chunks\n"
                        "  chunk size: 128.0 KiB\n"
                        f"serve it with: ninep serve --store {store}\n")
    assert os.stat(store).st_mode & 0o777 == 0o700
    again = ninep("init", store)
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr == (f"ninep: {store}: File exists: it is already a ninep store; "
                            f"serve it with: ninep serve --store {store}\n")
    listed = ninep("dataset", "list", "--store", store)
    assert listed.returncode == 0 and "main" in listed.stdout
    r = ninep("init", tmp_path / "small", "--chunk-size", "16K")
    assert r.returncode == 0 and "chunk size: 16.0 KiB" in r.stdout


def test_help_teaches_the_object_storage_options():
    init = ninep("init", "--help").stdout
    for words in ("--chunks s3://BUCKET/PREFIX", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_SECRET_ACCESS_KEY",
                  "never printed", "[s3]", "ninep init ./ninep-data --chunks s3://my-bucket/ninep"):
        assert words in init, words
    serve = ninep("serve", "--help").stdout
    assert "--chunks s3://BUCKET/PREFIX" in serve and "[s3] cache_size" in serve and "EIO" in serve
    stats = ninep("stats", "--help").stdout
    assert "--config FILE" in stats and "[s3]" in stats


@pytest.mark.parametrize("key, value", [
    ("commit_interval", float("nan")), ("gc_interval", float("inf")),
    ("catalog_copy_interval", -1.0), ("commit_interval", True), ("catalog_copy_keep", 0),
])
def test_server_numbers_must_be_finite_and_not_negative(key, value):
    with pytest.raises(ConfigError) as exc:
        parse_config({"server": {key: value}})
    assert f"server.{key}" in str(exc.value)
