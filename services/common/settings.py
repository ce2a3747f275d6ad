"""The environment every service reads; services subclass it to add their own.

    class ApiSettings(ServiceSettings):
        page_size: int = 20          # PAGE_SIZE

    settings = ApiSettings.load()    # InvalidSettings names the bad variables

Every secret field (``SecretStr``: SESSION_SECRET, REDIS_PASSWORD, ...) is read from ``NAME`` or, when that
is unset, from the file ``NAME_FILE`` names (a mounted secret); a known placeholder or a short value is
refused by name (``kit.secrets``). There is no in-code secret: a service that signs with
SESSION_SECRET (``requires_session_secret``) refuses to start without one; ``scalecube serve`` makes one
for its workers when none is set.
"""

from __future__ import annotations

import logging
import os
import typing
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kit import secrets
from shared_cache.connection import RedisConnector, parse_sentinels

log = logging.getLogger("scalecube.settings")

MIN_SECRET_LENGTH = secrets.MIN_SECRET_LENGTH
# The request body limit (MAX_BODY_BYTES); clients that batch (the router's moves) size their batches by it.
DEFAULT_MAX_BODY_BYTES = 65536
REDIS_SCHEMES = ("redis", "rediss", "unix")

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class InvalidSettings(ValueError):
    """The environment holds values a service cannot start with."""


def is_secret(annotation: Any) -> bool:
    """``SecretStr`` or ``SecretStr | None``: a field read from NAME or NAME_FILE and never echoed."""
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


class SecretFiles(PydanticBaseSettingsSource):
    """``NAME_FILE`` for every secret field: below the environment (a ``NAME`` set there wins), above
    the defaults. A file that cannot be read is a ``SecretError`` naming ``NAME_FILE``."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every file at once

    def __call__(self) -> dict[str, Any]:
        prefix = self.settings_cls.model_config.get("env_prefix", "")
        environ = {key.upper(): value for key, value in os.environ.items()}  # variables are read in any case
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            variable = (prefix + name).upper()
            if is_secret(field.annotation) and not environ.get(variable):
                path = environ.get(variable + secrets.FILE_SUFFIX)
                if path:
                    values[name] = secrets.read_file(variable, path)
        return values


class ServiceSettings(BaseSettings):
    """Field ``x_y`` is read from environment variable ``X_Y`` (any case); a secret field also from ``X_Y_FILE``."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)
    # True for a service that signs with SESSION_SECRET: it refuses to start without one.
    requires_session_secret: ClassVar[bool] = False

    redis_url: str = "redis://127.0.0.1:6379/0"
    # REDIS_SENTINELS=host:port,host:port,...: the sessions/cache/pub-sub Redis is a primary with replicas watched
    # by these Sentinels, which the clients ask for the primary (REDIS_URL then gives only the database number).
    redis_sentinels: str = ""
    redis_sentinel_master: str = "scalecube"  # REDIS_SENTINEL_MASTER: the name the Sentinels monitor it by
    # REDIS_WAIT_REPLICAS: a session write is answered once this many replicas hold it (WAIT); unset = 1 with
    # REDIS_SENTINELS (what failover needs), 0 without (one Redis has no replica to wait for).
    redis_wait_replicas: NonNegativeInt | None = None
    # REDIS_WAIT_TIMEOUT_SECONDS: how long that WAIT may take before the write is a 503 (below the 2 s op timeout).
    redis_wait_timeout_seconds: PositiveFloat = 1.0
    # REDIS_PASSWORD / REDIS_PASSWORD_FILE: sent by this service to each of its Redis servers (AUTH).
    redis_password: SecretStr | None = None
    session_backend: Literal["redis", "memory"] = "redis"
    session_secret: SecretStr | None = Field(default=None, validate_default=True)
    session_ttl_seconds: PositiveInt = 1800
    max_body_bytes: PositiveInt = DEFAULT_MAX_BODY_BYTES
    log_level: LogLevel = "info"
    # Off by default: one log line per request costs measurable throughput.
    access_log: bool = Field(default=False, description="ACCESS_LOG=1 logs every request")

    @classmethod
    def load(cls, **overrides: Any) -> Self:
        """Read the environment, or raise InvalidSettings naming each bad variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise InvalidSettings(cls._describe(exc)) from None
        except secrets.SecretError as exc:  # a NAME_FILE that cannot be read
            raise InvalidSettings(f"invalid {cls.__name__} configuration:\n  {exc}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, SecretFiles(settings_cls), dotenv_settings, file_secret_settings

    @property
    def session_secret_value(self) -> str:
        """The signing secret; only a service that ``requires_session_secret`` is sure to have one."""
        if self.session_secret is None:
            raise InvalidSettings(f"invalid {type(self).__name__} configuration:\n  SESSION_SECRET: required")
        return self.session_secret.get_secret_value()

    @property
    def redis_password_value(self) -> str | None:
        """What the Redis clients send (None: no AUTH)."""
        return self.redis_password.get_secret_value() if self.redis_password else None

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return parse_sentinels(self.redis_sentinels)

    @property
    def wait_replicas(self) -> int:
        if self.redis_wait_replicas is not None:
            return self.redis_wait_replicas
        return 1 if self.redis_sentinels else 0

    def redis_connector(self) -> RedisConnector:
        """The connector to the sessions/cache/pub-sub Redis: REDIS_URL, or the primary REDIS_SENTINELS name."""
        return RedisConnector(
            self.redis_url,
            password=self.redis_password_value,
            sentinels=self.sentinel_addresses,
            sentinel_master=self.redis_sentinel_master,
            wait_replicas=self.wait_replicas,
            wait_timeout=self.redis_wait_timeout_seconds,
        )

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, value: str) -> str:
        parse_sentinels(value)  # its ValueError names the bad entry
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_redis_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(f"must be a redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)}...)")
        return value

    @field_validator("session_secret", "redis_password")
    @classmethod
    def _secret_is_usable(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if info.field_name == "session_secret" and cls.requires_session_secret:
                raise ValueError(
                    "required: it signs the session cookies; set SESSION_SECRET or SESSION_SECRET_FILE "
                    "(`scalecube serve` makes one for its own workers when neither is set)"
                )
            return value
        reason = secrets.problem(value.get_secret_value())
        if reason:
            raise ValueError(reason)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def _describe(cls, exc: ValidationError) -> str:
        prefix = cls.model_config.get("env_prefix", "")
        lines = [f"invalid {cls.__name__} configuration:"]
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            variable = (prefix + field).upper()
            annotation = cls.model_fields[field].annotation if field in cls.model_fields else None
            shown = "" if is_secret(annotation) else f"={error.get('input')!r}"  # never echo a secret
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  {variable}{shown}: {message}")
        return "\n".join(lines)
