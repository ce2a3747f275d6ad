"""One route asked again and again from a thread, without waiting for the previous answer: when did it fail,
when did it come back?

The outage demo measures recovery from events: the fault ends (SIGCONT, or the killed part ready again)
and the first success after that is when users have it back. A loop that waits for each answer would
measure its own stuck request instead (a probe sent to a frozen Redis comes back 2 s later, whatever
happened meanwhile), so a new probe leaves every ``interval`` while earlier ones are still out, up to
``max_in_flight`` of them. Bounded in time (``max_seconds``) and count, it stops by itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from loadtests.locust.dependencies import CLIENT_TIMEOUT, error_fields

INTERVAL = 0.1  # seconds between probes: the resolution of the timeline
MAX_IN_FLIGHT = 64  # a frozen part holds each probe until its caller's timeout (auth: 5 s = 50 probes)


@dataclass(frozen=True)
class Answer:
    sent: float  # seconds since the epoch
    done: float
    status: int  # 0: no answer (refused, reset, timed out)
    dependency: str | None  # the "dependency" of a JSON error body
    error: str | None  # the "error" of a JSON error body, or the transport error's name

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Probe:
    """``GET url`` every ``interval`` seconds in a thread of its own, from ``start()`` to ``stop()``."""

    def __init__(
        self,
        url: str,
        *,
        cookies: httpx.Cookies | None = None,
        interval: float = INTERVAL,
        timeout: float = CLIENT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_seconds: float = 600.0,
    ) -> None:
        self.url = url
        self.cookies = cookies
        self.interval = interval
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.max_seconds = max_seconds
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> list[Answer]:
        """Stop sending, wait for the probes still out (each is bounded by ``timeout``), return every answer."""
        self._stop.set()
        self._thread.join(self.timeout + 10)
        if self._errors:
            raise self._errors[0]
        return self.answers()

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def answers(self) -> list[Answer]:
        with self._lock:
            return sorted(self._answers, key=lambda answer: answer.done)

    def first(self, predicate: Callable[[Answer], bool], after: float) -> Answer | None:
        """The first answer received at or after ``after`` that satisfies ``predicate``."""
        return next((a for a in self.answers() if a.done >= after and predicate(a)), None)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # raised again by stop(), in the caller's thread
            self._errors.append(exc)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
        out: set[asyncio.Task[None]] = set()
        deadline = time.monotonic() + self.max_seconds
        async with httpx.AsyncClient(
            timeout=self.timeout, limits=limits, cookies=self.cookies, trust_env=False
        ) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if len(out) < self.max_in_flight:
                    probe = asyncio.create_task(self._one(client))
                    out.add(probe)
                    probe.add_done_callback(out.discard)
                await asyncio.sleep(self.interval)
            if out:
                await asyncio.wait(out, timeout=self.timeout + 5)

    async def _one(self, client: httpx.AsyncClient) -> None:
        sent = time.time()
        try:
            response = await client.get(self.url)
            dependency, error = error_fields(response.status_code, response.content)
            answer = Answer(sent, time.time(), response.status_code, dependency, error)
        except httpx.HTTPError as exc:
            answer = Answer(sent, time.time(), 0, None, type(exc).__name__)
        with self._lock:
            self._answers.append(answer)
