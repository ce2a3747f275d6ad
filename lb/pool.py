"""Upstream groups: their backends, which of them may take traffic, and who is next.

A ``Pool`` is one named group (api, auth, router). Discovery tells it which
addresses exist (``set_addresses``); health checks and the proxy tell it which
of them work (``report_check``, ``connect_failed``); the proxy asks it for a
backend (``pick``). Everything runs on one event loop: no locks.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

log = logging.getLogger("scalecube.lb")

Address = tuple[str, int]
POLICIES = ("rr", "leastconn")


def backend_id(pool: str, address: Address) -> str:
    """Opaque and stable: the sticky cookie names a backend without revealing its address."""
    return hashlib.blake2s(f"{pool}|{address[0]}|{address[1]}".encode(), digest_size=6).hexdigest()


@dataclass(eq=False)
class Backend:
    pool: str
    address: Address
    id: str = ""
    healthy: bool = True  # optimistic until the first check says otherwise: a new replica gets traffic at once
    removed: bool = False  # discovery no longer lists it: no new requests; in-flight ones finish
    inflight: int = 0
    served: int = 0
    failed: int = 0  # requests that got no response from it
    retried_away: int = 0  # requests moved to another backend after failing here
    ejections: int = 0
    checks_ok: int = 0  # consecutive, for rise
    checks_failed: int = 0  # consecutive, for fall
    changed_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = backend_id(self.pool, self.address)

    @property
    def available(self) -> bool:
        return self.healthy and not self.removed

    @property
    def label(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id, "address": self.label, "healthy": self.healthy, "removed": self.removed,
            "inflight": self.inflight, "served": self.served, "failed": self.failed,
            "retried_away": self.retried_away, "ejections": self.ejections,
            "since": round(time.monotonic() - self.changed_at, 1),
        }  # fmt: skip


class Pool:
    def __init__(self, name: str, *, policy: str = "rr", rise: int = 2, fall: int = 2) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.name = name
        self.policy = policy
        self.rise = rise
        self.fall = fall
        self.backends: dict[Address, Backend] = {}
        self._turn = itertools.count()

    # -- membership (discovery) --------------------------------------------------
    def set_addresses(self, addresses: Iterable[Address]) -> None:
        """The full current list: new ones join, missing ones leave once their in-flight requests end."""
        wanted = set(addresses)
        for address in wanted:
            backend = self.backends.get(address)
            if backend is None:
                self.backends[address] = Backend(self.name, address)
                log.info("%s: backend %s:%d added", self.name, *address)
            elif backend.removed:
                backend.removed = False
                backend.changed_at = time.monotonic()
                log.info("%s: backend %s:%d is back", self.name, *address)
        for address, backend in list(self.backends.items()):
            if address not in wanted and not backend.removed:
                backend.removed = True
                backend.changed_at = time.monotonic()
                log.info("%s: backend %s:%d removed (%d in flight finish first)", self.name, *address,
                         backend.inflight)  # fmt: skip
        self.forget_drained()

    def forget_drained(self) -> None:
        for address, backend in list(self.backends.items()):
            if backend.removed and backend.inflight == 0:
                del self.backends[address]

    # -- health ------------------------------------------------------------------
    def report_check(self, backend: Backend, ok: bool) -> None:
        """An active check's verdict; ``rise`` passes in a row bring it back, ``fall`` failures take it out."""
        if ok:
            backend.checks_ok += 1
            backend.checks_failed = 0
            if not backend.healthy and backend.checks_ok >= self.rise:
                self._set_health(backend, True, f"passed {self.rise} checks")
        else:
            backend.checks_failed += 1
            backend.checks_ok = 0
            if backend.healthy and backend.checks_failed >= self.fall:
                self._set_health(backend, False, f"failed {self.fall} checks")

    def connect_failed(self, backend: Backend) -> None:
        """Passive ejection: a refused or reset connection takes it out until checks pass again."""
        backend.checks_ok = 0
        if backend.healthy:
            backend.ejections += 1
            self._set_health(backend, False, "connection failed (passive ejection)")

    def _set_health(self, backend: Backend, healthy: bool, why: str) -> None:
        backend.healthy = healthy
        backend.changed_at = time.monotonic()
        (log.info if healthy else log.warning)("%s: backend %s %s: %s", self.name, backend.label,
                                               "healthy" if healthy else "ejected", why)  # fmt: skip

    # -- selection ---------------------------------------------------------------
    def pick(self, exclude: Collection[Backend] = ()) -> Backend | None:
        # ``exclude`` holds the backends already tried: empty on the per-request path, so skip building a set.
        candidates = [b for b in self.backends.values() if b.available and (not exclude or b not in exclude)]
        if not candidates:
            return None
        if self.policy == "leastconn":
            least = min(b.inflight for b in candidates)
            candidates = [b for b in candidates if b.inflight == least]
        return candidates[next(self._turn) % len(candidates)]

    def by_id(self, backend_id: str) -> Backend | None:
        return next((b for b in self.backends.values() if b.id == backend_id), None)

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "policy": self.policy,
                "backends": [b.describe() for b in sorted(self.backends.values(), key=lambda b: b.address)]}  # fmt: skip
