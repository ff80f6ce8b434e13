"""Where the object storage is and how to talk to it: :class:`S3Settings`.

Values come from the standard AWS variables, which take precedence over the
configuration file (as with the AWS CLI). The secret key is a
``pydantic.SecretStr``: its repr and str are ``'**********'``, and nothing in
``cas`` logs it or the access key id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr

#: environment variable -> field
ENV_VARS = {
    "AWS_ENDPOINT_URL": "endpoint",
    "AWS_REGION": "region",
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    "AWS_ALLOW_HTTP": "allow_http",
}


class S3Settings(BaseModel):
    """Endpoint, credentials, and the retry and timeout knobs of the S3 chunk backend.

    A request that fails with a 5xx, SlowDown, a timeout or a refused
    connection is retried with exponential backoff (``init_backoff`` doubling
    up to ``max_backoff``) at most ``max_retries`` times and for at most
    ``retry_timeout`` seconds in all; then the operation fails with EIO.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = Field(default=None, repr=False)
    secret_access_key: SecretStr | None = None
    allow_http: bool = False
    #: retries of one request, and the time all retries of it may take (seconds)
    max_retries: int = Field(default=10, ge=0)
    retry_timeout: float = Field(default=30.0, gt=0)
    init_backoff: float = Field(default=0.1, gt=0)
    max_backoff: float = Field(default=5.0, gt=0)
    #: seconds for one whole request, and for its connect phase
    timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)

    @classmethod
    def resolve(cls, file_values: Mapping | None = None) -> "S3Settings":
        """Settings from ``file_values`` (the configuration file), overridden by the environment.

        Set AWS_* variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
        AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP) win over the file's values;
        an empty variable counts as unset.
        """
        values = {k: v for k, v in dict(file_values or {}).items() if v is not None}
        for var, name in ENV_VARS.items():
            value = os.environ.get(var)
            if value:
                values[name] = value
        return cls.model_validate(values)

    def obstore_options(self) -> dict:
        """Keyword arguments for ``obstore.store.S3Store`` (credentials included: never log them)."""
        config: dict = {}
        if self.endpoint:
            config["endpoint"] = self.endpoint
        if self.region:
            config["region"] = self.region
        if self.access_key_id:
            config["access_key_id"] = self.access_key_id
        if self.secret_access_key is not None:
            config["secret_access_key"] = self.secret_access_key.get_secret_value()
        client = {"allow_http": self.allow_http,
                  "timeout": timedelta(seconds=self.timeout),
                  "connect_timeout": timedelta(seconds=self.connect_timeout)}
        retry = {"max_retries": self.max_retries,
                 "retry_timeout": timedelta(seconds=self.retry_timeout),
                 "backoff": {"init_backoff": timedelta(seconds=self.init_backoff),
                             "max_backoff": timedelta(seconds=self.max_backoff),
                             "base": 2.0}}
        return {**config, "client_options": client, "retry_config": retry}

    def secrets(self) -> list[str]:
        """The strings no log line or error message may contain."""
        out = [self.access_key_id or ""]
        if self.secret_access_key is not None:
            out.append(self.secret_access_key.get_secret_value())
        return [s for s in out if len(s) >= 4]
