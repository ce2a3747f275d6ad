"""The users count's state, read by read (fast, no processes): what a worker answers after each outcome.

The whole path (a real router, master and workers) is in tests/services/router/test_users_count.py.
"""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException

from kit.errors import DependencyUnavailable
from services.api.users_count import Reading, UsersCount


class Scripted:
    """A source answering from a script: an int is a count, an exception is raised."""

    origin = "scripted"

    def __init__(self, *outcomes: int | Exception) -> None:
        self.outcomes = list(outcomes)

    async def count(self) -> int:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def answers(*outcomes: int | Exception) -> list[dict | Exception]:
    """What a worker answers after each read, fed the master's state as the broadcast does."""
    reading, holder, seen = Reading(Scripted(*outcomes)), UsersCount("master broadcast", "scripted"), []
    for _ in outcomes:
        holder.update(asyncio.run(reading.refresh()))
        try:
            seen.append(holder.describe(1.0))
        except (DependencyUnavailable, HTTPException) as exc:
            seen.append(exc)
    return seen


def test_a_failed_read_keeps_the_last_count_marked_stale_until_the_next_good_one():
    down = DependencyUnavailable("router", "connection refused")
    first, stale, again_stale, fresh = answers(3, down, down, 5)
    assert first["count"] == 3 and first["stale"] is False and first["stale_reason"] is None
    assert first["origin"] == "scripted" and first["source"] == "master broadcast"
    for answer in (stale, again_stale):
        assert answer["count"] == 3 and answer["stale"] is True
        assert answer["stale_reason"].startswith("router unavailable at the last read")
        assert answer["read_at"] == first["read_at"]  # the age is the last good read's
        assert "connection refused" not in answer["stale_reason"]  # details are for the logs
    assert fresh["count"] == 5 and fresh["stale"] is False


def test_never_read_is_a_503_naming_the_part_or_saying_not_yet():
    (never,) = answers(DependencyUnavailable("router"))
    assert isinstance(never, DependencyUnavailable) and never.dependency == "router"
    with pytest.raises(HTTPException) as not_yet:
        UsersCount("worker poll", "scripted").describe(1.0)
    assert not_yet.value.status_code == 503
