"""The hand-off (cluster.handoff): a busy worker is handed no more than it can take, what a dead
worker never started goes to another, and overload gets a fast 503 — real clusters, real sockets.

Workers are made busy deterministically: ``/block?until=FILE`` blocks a worker's event loop (as CPU
work would) until the test creates FILE, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from cluster.handoff import SHED_RESPONSE, HandoffLimits, HoldQueue, Ledger
from infra.local.processes import wait_until


def fresh_get(url: str, timeout: float = 30) -> httpx.Response:
    """One request on its own connection (as ab and the guides' clients do)."""
    with httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return client.get(url)


def worker_of(cluster, pid: int) -> dict:
    return next(w for w in cluster.status()["workers"] if w["pid"] == pid)


class Blocker:
    """Blocks one worker on /block until released; knows which worker it blocked."""

    def __init__(self, cluster, tmp_path: Path, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        self.release_file = tmp_path / f"release-{time.monotonic_ns()}"
        self.cluster = cluster
        self.future = pool.submit(fresh_get, f"{cluster.url}/block?until={self.release_file}")
        self.pid = wait_until(self._busy_pid, 30, what="a worker busy with /block")

    def _busy_pid(self) -> int | None:
        # Blocked: it took /block (read it: untaken 0) and has not answered it. Handed but not yet taken is
        # not blocked yet: the worker could still take what comes next.
        busy = [w["pid"] for w in self.cluster.status()["workers"] if w["unanswered"] >= 1 and w["untaken"] == 0]
        return busy[0] if len(busy) == 1 else None

    def release(self) -> None:
        self.release_file.touch()


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


def test_least_hands_a_busy_worker_nothing_while_another_is_free(start_cluster, tmp_path, pool):
    cluster = start_cluster(workers=2, policy="least")
    blocker = Blocker(cluster, tmp_path, pool)
    served = [fresh_get(cluster.url + "/").json()["pid"] for _ in range(6)]
    assert blocker.pid not in served  # the old rr gave every other one to the blocked worker: a 60-s wait
    assert len(set(served)) == 1
    blocker.release()
    assert blocker.future.result().json()["pid"] == blocker.pid


def test_rr_hands_a_blocked_worker_no_more_than_its_limit(start_cluster, tmp_path, pool):
    """A worker whose loop is blocked cannot take what it is handed: it gets ``limit`` (1 here) and no
    more; every other connection goes to the worker that keeps taking them."""
    cluster = start_cluster(workers=2, policy="rr", args=["--handoff-limit", "1"])
    blocker = Blocker(cluster, tmp_path, pool)
    cheap = [pool.submit(fresh_get, cluster.url + "/") for _ in range(6)]
    wait_until(lambda: sum(f.done() for f in cheap) == 5, 60, what="five answered by the free worker")
    assert worker_of(cluster, blocker.pid)["untaken"] == 1
    blocker.release()
    served = [f.result().json()["pid"] for f in cheap]
    assert served.count(blocker.pid) == 1 and len(set(served)) == 2


def test_what_a_dead_worker_never_started_is_served_by_another(start_cluster, tmp_path, pool):
    cluster = start_cluster(workers=2, policy="rr", args=["--handoff-limit", "2"])
    blocker = Blocker(cluster, tmp_path, pool)
    cheap = [pool.submit(fresh_get, cluster.url + "/") for _ in range(4)]
    # The blocked worker had room for one more: it is handed one it cannot even read.
    wait_until(
        lambda: worker_of(cluster, blocker.pid)["untaken"] == 2, 30, what="two connections stuck on the blocked worker"
    )
    os.kill(blocker.pid, signal.SIGKILL)
    answers = [f.result() for f in cheap]
    assert [a.status_code for a in answers] == [200] * 4
    assert blocker.pid not in {a.json()["pid"] for a in answers}
    assert cluster.status()["master"]["reclaimed"] >= 1
    with pytest.raises(httpx.TransportError):  # what it had started dies with it, as with Node
        blocker.future.result()


def test_overload_gets_a_fast_503_from_the_master_not_a_timeout(start_cluster, tmp_path, pool):
    cluster = start_cluster(
        workers=1, policy="rr", args=["--handoff-limit", "1", "--max-queue", "2", "--queue-timeout", "1"]
    )
    blocker = Blocker(cluster, tmp_path, pool)
    futures = [pool.submit(fresh_get, cluster.url + "/") for _ in range(5)]
    try:
        wait_until(lambda: sum(f.done() for f in futures) == 4, 60, what="four answered by the master")
    finally:
        blocker.release()
    answers = [f.result() for f in futures]
    shed = [a for a in answers if a.status_code == 503]
    # One was handed to the blocked worker (its limit), two waited a second in line, two found the line full.
    assert len(shed) == 4 and [a.status_code for a in answers if a not in shed] == [200]
    for answer in shed:
        assert answer.headers["retry-after"] == "1"
        assert answer.json()["error"] == "overloaded"
    assert cluster.status()["master"]["shed"] == 4
    assert blocker.future.result().status_code == 200
    assert fresh_get(cluster.url + "/").status_code == 200  # and it serves again at once


def test_with_no_worker_left_connections_wait_for_the_replacement_not_a_503(start_cluster, tmp_path, pool):
    """The queue timeout sheds when workers are busy; when there is none at all (it died, a replacement is
    starting) a 503 would fail what the replacement serves in a moment, so the connection waits for it."""
    cluster = start_cluster(
        workers=1, policy="rr", args=["--handoff-limit", "1", "--queue-timeout", "1"], env={"TEST_STARTUP_DELAY": "2"}
    )  # a replacement takes longer than the queue timeout
    blocker = Blocker(cluster, tmp_path, pool)
    waiting = pool.submit(fresh_get, cluster.url + "/")
    wait_until(
        lambda: worker_of(cluster, blocker.pid)["untaken"] == 1, 30, what="a request stuck on the blocked worker"
    )
    os.kill(blocker.pid, signal.SIGKILL)
    answer = waiting.result()
    assert answer.status_code == 200 and answer.json()["pid"] != blocker.pid
    status = cluster.status()["master"]
    assert status["shed"] == 0 and status["reclaimed"] == 1


# -- the master's bookkeeping, in-process with real socketpairs -------------------------------


def test_ledger_counts_unanswered_and_gives_back_only_untaken_copies():
    pairs = [socket.socketpair() for _ in range(3)]
    ledger = Ledger()
    for number, (mine, _) in enumerate(pairs, start=1):
        ledger.handed(number, mine)
    assert ledger.unanswered == 3
    ledger.took(1)  # started: our copy is closed, it can no longer be given to anyone
    assert pairs[0][0].fileno() == -1
    ledger.done(1)
    ledger.done(3)  # closed before any byte: nothing to give back either
    assert ledger.unanswered == 1
    assert ledger.reclaim() == [pairs[1][0]]
    assert ledger.unanswered == 0 and ledger.reclaim() == []
    for mine, theirs in pairs:
        mine.close()
        theirs.close()


def test_hold_queue_sheds_when_full_and_when_too_old():
    shed: list[int] = []
    queue = HoldQueue(HandoffLimits(limit=1, max_queue=2, queue_timeout=5), shed.append)
    clients = []
    for _ in range(3):
        mine, theirs = socket.socketpair()
        clients.append(theirs)
        theirs.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        queue.put(mine)
    assert len(queue) == 2 and shed == [1]
    assert clients[2].recv(len(SHED_RESPONSE)) == SHED_RESPONSE
    deadline = queue.next_deadline()
    assert deadline is not None and queue.expire(deadline - 1) == 0
    assert queue.expire(deadline + 1) == 2 and shed == [1, 2]
    assert all(c.recv(12) == b"HTTP/1.1 503" for c in clients[:2])
    for client in clients:
        client.close()
