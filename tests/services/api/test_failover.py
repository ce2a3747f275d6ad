"""The api behind Redis Sentinel: a real cluster, real HTTP, the primary SIGKILLed under it.

After the failover the sessions given before it still answer, new logins work, the master's users-count
broadcast (read by the cluster master through its own connector) carries the new count, and every worker's
pub/sub listener hears an announcement published after it.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from infra.local.sentinel import SentinelGroup, role_of

pytestmark = pytest.mark.slow

DEADLINE = 90.0  # bounds every loop below; they end on an event, not on elapsed time


def until(check, what: str):  # noqa: ANN001, ANN201 - a small local helper
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {DEADLINE:g}s: {what}"
        time.sleep(0.1)


def login(client: httpx.Client, user: str) -> httpx.Response:
    return client.post("/session/login", json={"user": user})


def test_sessions_users_count_and_announcements_survive_a_failover(sentinel_group: SentinelGroup, start_api) -> None:  # noqa: ANN001
    group = sentinel_group
    api = start_api(
        group.url,
        workers=2,
        env={**group.env(), "USERS_COUNT_INTERVAL": "0.3", "USERS_SOURCE_DELAY": "0", "LOG_LEVEL": "warning"},
    )
    with httpx.Client(base_url=api.url, timeout=10.0) as ann, httpx.Client(base_url=api.url, timeout=10.0) as bob:
        assert login(ann, "ann").status_code == 200
        assert ann.get("/session/me").json()["user"] == "ann"
        until(lambda: (ann.get("/users/count").json().get("count") or 0) >= 1, "the count before the failover")

        old = group.node_at(group.wait_settled())
        old.kill()
        restart = threading.Thread(target=group.restart, args=(old,))
        restart.start()
        try:
            seen: list[int] = []

            def me_again() -> bool:
                response = ann.get("/session/me")
                seen.append(response.status_code)
                if response.status_code == 503:
                    assert response.json().get("dependency") == "redis"
                    assert response.headers.get("Retry-After")
                return response.status_code == 200 and 503 in seen

            until(me_again, "ann's session answering again after 503s")
            assert set(seen) <= {200, 503}, seen  # never 401: the session was not lost
            until(lambda: login(bob, "bob").status_code == 200, "a new login after the failover")
            # The master reads the count through the new primary and broadcasts it to the workers.
            until(lambda: (bob.get("/users/count").json().get("count") or 0) >= 2, "the count after the failover")

            def every_worker_heard() -> bool:
                published = ann.post("/announcements", json={"message": "after failover"})
                return published.status_code == 202 and published.json()["receivers"] >= 2

            until(every_worker_heard, "both workers' listeners resubscribed")
            heard = {ann.get("/announcements/last").json()["last"]["message"] for _ in range(6)}
            assert heard == {"after failover"}
        finally:
            restart.join(DEADLINE)
    new_primary = group.wait_settled()
    info = role_of((old.host, old.port))
    assert info is not None and info["role"] == "slave" and int(str(info["master_port"])) == new_primary[1]
