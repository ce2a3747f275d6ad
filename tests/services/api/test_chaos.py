"""CHAOS_CRASH_AFTER: workers that exit abruptly after a random delay, replaced by the master."""

from __future__ import annotations

import random
import secrets
import time

import httpx
import pytest
from pydantic import ValidationError

from infra.local.processes import wait_until
from services.api.chaos import CrashTimer, parse_crash_after
from services.api.settings import ApiSettings

SECRET = secrets.token_urlsafe(32)  # the api refuses to load without one


@pytest.mark.parametrize(
    ("text", "window"),
    [(None, None), ("", None), ("  ", None), ("1,10", (1.0, 10.0)), (" 0.5 , 2 ", (0.5, 2.0)), ("3,3", (3.0, 3.0))],
)
def test_parse_crash_after(text: str | None, window: tuple[float, float] | None) -> None:
    assert parse_crash_after(text) == window


@pytest.mark.parametrize("text", ["1", "1,2,3", "a,b", "5,1", "-1,2", "1;2"])
def test_a_bad_window_says_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="CHAOS_CRASH_AFTER"):
        parse_crash_after(text)


def test_the_setting_is_checked_at_load() -> None:
    with pytest.raises(ValidationError, match="MIN,MAX"):
        ApiSettings(chaos_crash_after="ten", session_secret=SECRET)
    assert ApiSettings(chaos_crash_after="1,2", session_secret=SECRET).chaos_crash_after == "1,2"
    assert ApiSettings(session_secret=SECRET).chaos_crash_after is None


def test_the_delay_is_drawn_inside_the_window() -> None:
    rng = random.Random(7)
    delays = [CrashTimer((1.0, 3.0), rng).delay for _ in range(200)]
    assert all(1.0 <= d <= 3.0 for d in delays) and max(delays) - min(delays) > 1.5


def test_workers_crash_and_the_master_replaces_them(start_api, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    # --max-crashes 0: with a crash every ~1.5 s per worker the master must not give up.
    cluster = start_api(redis_url, workers=2, env={"CHAOS_CRASH_AFTER": "1,1.5"}, args=["--max-crashes", "0"])
    first = cluster.listening_pids()
    restarts = wait_until(
        lambda: sum(w["restarts"] for w in cluster.status()["workers"]) >= 2, 30, what="two crashes and restarts"
    )
    assert restarts
    assert cluster.proc.poll() is None, "the master keeps running"
    later = wait_until(lambda: cluster.listening_pids() - first, 30, what="replacement workers listening")
    assert later and not later & first
    log = cluster.log()
    assert "exits now" in log and "exited with code 1" in log
    # A replacement serves (before it too goes).
    assert wait_until(lambda: _get(cluster.url + "/"), 10, interval=0.1, what="an answer from a live worker")


def test_without_the_variable_nothing_crashes(start_api, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    cluster = start_api(redis_url, workers=1)
    pids = cluster.listening_pids()
    time.sleep(2)
    assert cluster.listening_pids() == pids and "chaos" not in cluster.log()


def _get(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
