"""S3Settings: the environment over the configuration file, and a secret that never shows."""

from datetime import timedelta

import pytest
from pydantic import ValidationError

from cas import S3Settings

VARS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ALLOW_HTTP")


@pytest.fixture
def clean_env(monkeypatch):
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_environment_wins_over_the_file(clean_env):
    file_values = {"endpoint": "http://file:1", "region": "file-region", "access_key_id": "FILEKEY",
                   "secret_access_key": "file-secret", "allow_http": False, "retry_timeout": 7}
    s = S3Settings.resolve(file_values)
    assert (s.endpoint, s.region, s.access_key_id, s.allow_http) == ("http://file:1", "file-region",
                                                                      "FILEKEY", False)
    clean_env.setenv("AWS_ENDPOINT_URL", "http://env:2")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    clean_env.setenv("AWS_ALLOW_HTTP", "true")
    clean_env.setenv("AWS_REGION", "")               # empty: unset
    s = S3Settings.resolve(file_values)
    assert s.endpoint == "http://env:2" and s.allow_http is True and s.region == "file-region"
    assert s.secret_access_key.get_secret_value() == "env-secret"
    assert s.access_key_id == "FILEKEY" and s.retry_timeout == 7


def test_no_values_at_all(clean_env):
    s = S3Settings.resolve()
    assert s.endpoint is None and s.secret_access_key is None and s.allow_http is False
    opts = s.obstore_options()
    assert "secret_access_key" not in opts and "endpoint" not in opts
    assert opts["retry_config"]["retry_timeout"] == timedelta(seconds=30)


def test_secret_and_key_id_never_show(clean_env):
    s = S3Settings(access_key_id="AKIDSHOWNOWHERE", secret_access_key="s3cr3t-value")
    for text in (repr(s), str(s), f"{s}", repr(s.model_dump())):
        assert "s3cr3t-value" not in text
    assert "AKIDSHOWNOWHERE" not in repr(s)
    assert s.obstore_options()["secret_access_key"] == "s3cr3t-value"
    assert sorted(s.secrets()) == ["AKIDSHOWNOWHERE", "s3cr3t-value"]


def test_unknown_or_bad_values_are_refused(clean_env):
    with pytest.raises(ValidationError):
        S3Settings.resolve({"endpint": "http://typo"})
    with pytest.raises(ValidationError):
        S3Settings.resolve({"retry_timeout": 0})
    clean_env.setenv("AWS_ALLOW_HTTP", "maybe")
    with pytest.raises(ValidationError):
        S3Settings.resolve()
