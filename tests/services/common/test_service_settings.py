"""The environment contract: defaults, overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest

from services.common.settings import InvalidSettings, ServiceSettings

CONTRACT = [
    "REDIS_URL",
    "SESSION_BACKEND",
    "SESSION_SECRET",
    "SESSION_TTL_SECONDS",
    "MAX_BODY_BYTES",
    "LOG_LEVEL",
    "ACCESS_LOG",
    "REDIS_PASSWORD",
    "SESSION_SECRET_FILE",
    "REDIS_PASSWORD_FILE",
]
GOOD_SECRET = "a-perfectly-long-enough-secret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CONTRACT:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = ServiceSettings.load()

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.session_backend == "redis"
    assert settings.session_secret is None  # no secret in code: `scalecube serve` makes one (test_secrets.py)
    assert settings.redis_password is None
    assert settings.session_ttl_seconds == 1800
    assert settings.max_body_bytes == 65536
    assert settings.log_level == "info"
    assert settings.access_log is False


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("SESSION_BACKEND", "memory")
    monkeypatch.setenv("SESSION_SECRET", GOOD_SECRET)
    monkeypatch.setenv("SESSION_TTL_SECONDS", "60")
    monkeypatch.setenv("MAX_BODY_BYTES", "1024")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("ACCESS_LOG", "1")

    settings = ServiceSettings.load()

    assert settings.redis_url == "redis://cache:6380/2"
    assert (settings.session_backend, settings.session_ttl_seconds) == ("memory", 60)
    assert settings.session_secret.get_secret_value() == GOOD_SECRET
    assert (settings.max_body_bytes, settings.log_level, settings.access_log) == (1024, "debug", True)


def test_the_secret_never_shows_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_SECRET", GOOD_SECRET)

    assert GOOD_SECRET not in repr(ServiceSettings.load())


def test_invalid_values_name_every_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_BACKEND", "mysql")
    monkeypatch.setenv("MAX_BODY_BYTES", "64k")
    monkeypatch.setenv("SESSION_TTL_SECONDS", "0")
    monkeypatch.setenv("REDIS_URL", "http://cache:6379")
    monkeypatch.setenv("LOG_LEVEL", "loud")

    with pytest.raises(InvalidSettings) as caught:
        ServiceSettings.load()

    message = str(caught.value)
    assert message.startswith("invalid ServiceSettings configuration:")
    assert "SESSION_BACKEND='mysql': Input should be 'redis' or 'memory'" in message
    assert "MAX_BODY_BYTES='64k'" in message
    assert "SESSION_TTL_SECONDS='0': Input should be greater than 0" in message
    assert "REDIS_URL='http://cache:6379': must be a redis URL" in message
    assert "LOG_LEVEL='loud'" in message


def test_a_short_secret_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_SECRET", "hunter2")

    with pytest.raises(InvalidSettings, match="SESSION_SECRET: must be at least 16 characters") as caught:
        ServiceSettings.load()
    assert "hunter2" not in str(caught.value)


def test_services_extend_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    class ApiSettings(ServiceSettings):
        page_size: int = 20

    monkeypatch.setenv("PAGE_SIZE", "50")
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")

    settings = ApiSettings.load()
    assert (settings.page_size, settings.max_body_bytes) == (50, 2048)

    monkeypatch.setenv("PAGE_SIZE", "many")
    with pytest.raises(InvalidSettings, match="invalid ApiSettings configuration:\n  PAGE_SIZE='many'"):
        ApiSettings.load()
