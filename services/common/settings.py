"""The environment every service reads; services subclass it to add their own.

    class ApiSettings(ServiceSettings):
        page_size: int = 20          # PAGE_SIZE

    settings = ApiSettings.load()    # InvalidSettings names the bad variables
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, PositiveInt, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("scalecube.settings")

# Only for laptops and tests: anyone reading this file can forge sessions signed with it.
INSECURE_DEV_SESSION_SECRET = "scalecube-insecure-development-session-secret"
MIN_SECRET_LENGTH = 16
# The request body limit (MAX_BODY_BYTES); clients that batch (the router's moves) size their batches by it.
DEFAULT_MAX_BODY_BYTES = 65536
REDIS_SCHEMES = ("redis", "rediss", "unix")

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class InvalidSettings(ValueError):
    """The environment holds values a service cannot start with."""


class ServiceSettings(BaseSettings):
    """Field ``x_y`` is read from environment variable ``X_Y`` (any case)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    session_backend: Literal["redis", "memory"] = "redis"
    session_secret: SecretStr = SecretStr(INSECURE_DEV_SESSION_SECRET)
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

    @property
    def uses_insecure_dev_secret(self) -> bool:
        return self.session_secret.get_secret_value() == INSECURE_DEV_SESSION_SECRET

    def model_post_init(self, context: Any, /) -> None:
        if self.uses_insecure_dev_secret:
            _warn_insecure_dev_secret()

    @field_validator("redis_url")
    @classmethod
    def _redis_url_has_a_redis_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in REDIS_SCHEMES:
            raise ValueError(f"must be a redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)}...)")
        return value

    @field_validator("session_secret")
    @classmethod
    def _secret_is_long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
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
            shown = "" if annotation is SecretStr else f"={error.get('input')!r}"  # never echo a secret
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  {variable}{shown}: {message}")
        return "\n".join(lines)


@functools.cache
def _warn_insecure_dev_secret() -> None:
    log.warning(
        "SESSION_SECRET is not set: using the insecure development secret; "
        "anyone can forge sessions. Set SESSION_SECRET in any shared or public deployment."
    )
