"""Upstream groups: their backends, which of them may take traffic, and who is next.

A ``Pool`` is one named group (api, auth, router). Discovery tells it which
addresses exist (``set_addresses``); health checks and the proxy tell it which
of them work (``report_check``, ``connect_failed``, ``connect_ok``); the proxy
asks it for a backend (``pick``). Everything runs on one event loop: no locks.

Which backends may be picked (``routable``) is worked out when something changes
(a check's verdict, a failed connection, discovery), never per request, so ``pick``
only walks a small tuple. Normally they are the healthy ones. When too few are
healthy — none, by default — the pool *panics*, as Envoy's panic threshold does:
checks that fail everywhere at once say more about the checks (every worker busy
with heavy requests, a shared dependency down) than about the backends, and
answering 503 to everybody is the worst reply. So it routes to every backend it
knows, except those that refuse connections while others accept them; a backend
whose connect fails is still skipped per request (the proxy retries another).
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
# Least outstanding requests: under mixed load (a few heavy /cpu requests among many cheap ones) round
# robin keeps sending cheap requests to a replica whose workers are all busy; counting what is in flight
# sends them where nothing heavy is running. HAProxy's haproxy.cfg defaults to the same (LB_BALANCE).
DEFAULT_POLICY = "leastconn"
# Panic when fewer than this share of a group's backends are healthy; 0: only when none is (what
# HAProxy can do as well). Envoy's default is 0.5.
DEFAULT_PANIC_BELOW = 0.0


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
    reachable: bool = True  # False since a connection to it failed, until one succeeds (a check's or a request's)
    routable: bool = False  # the pool may pick it now (set by the pool: healthy, or any reachable one in panic)
    inflight: int = 0
    served: int = 0
    failed: int = 0  # requests that got no response from it (connection failed, closed or reset)
    timeouts: int = 0  # requests it accepted but did not answer within the read timeout (504, never retried)
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
            "id": self.id,
            "address": self.label,
            "healthy": self.healthy,
            "removed": self.removed,
            "reachable": self.reachable,
            "routable": self.routable,
            "inflight": self.inflight,
            "served": self.served,
            "failed": self.failed,
            "timeouts": self.timeouts,
            "retried_away": self.retried_away,
            "ejections": self.ejections,
            "since": round(time.monotonic() - self.changed_at, 1),
        }


class Pool:
    def __init__(
        self,
        name: str,
        *,
        policy: str = DEFAULT_POLICY,
        rise: int = 2,
        fall: int = 2,
        panic_below: float = DEFAULT_PANIC_BELOW,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if not 0.0 <= panic_below <= 1.0:
            raise ValueError(f"panic_below must be a share from 0 to 1, got {panic_below!r}")
        self.name = name
        self.policy = policy
        self.rise = rise
        self.fall = fall
        self.panic_below = panic_below
        self.backends: dict[Address, Backend] = {}
        self.panic = False  # too few healthy backends: routing to every known one (see the module's docstring)
        self.panic_requests = 0  # requests routed while in panic (the proxy counts them)
        self.panics = 0  # times the pool went into panic
        self._routable: tuple[Backend, ...] = ()
        self._by_id: dict[str, Backend] = {}
        self._turn = itertools.count()

    # -- membership (discovery) --------------------------------------------------
    def set_addresses(self, addresses: Iterable[Address]) -> None:
        """The full current list: new ones join, missing ones leave once their in-flight requests end."""
        wanted = set(addresses)
        for address in wanted:
            backend = self.backends.get(address)
            if backend is None:
                backend = self.backends[address] = Backend(self.name, address)
                self._by_id[backend.id] = backend
                log.info("%s: backend %s:%d added", self.name, *address)
            elif backend.removed:
                backend.removed = False
                backend.changed_at = time.monotonic()
                log.info("%s: backend %s:%d is back", self.name, *address)
        for address, backend in list(self.backends.items()):
            if address not in wanted and not backend.removed:
                backend.removed = True
                backend.changed_at = time.monotonic()
                log.info("%s: backend %s:%d removed (%d in flight finish first)", self.name, *address, backend.inflight)
        self.forget_drained()
        self._update()

    def forget_drained(self) -> None:
        for address, backend in list(self.backends.items()):
            if backend.removed and backend.inflight == 0:
                del self.backends[address]
                self._by_id.pop(backend.id, None)

    # -- health ------------------------------------------------------------------
    def report_check(self, backend: Backend, ok: bool, *, connected: bool | None = None) -> None:
        """An active check's verdict; ``rise`` passes in a row bring it back, ``fall`` failures take it out.

        ``connected``: whether the check could open a connection at all (None: cannot tell, e.g. it timed
        out). A backend that answers 503, or too slowly, is unhealthy but reachable: panic still uses it."""
        changed = connected is not None and connected != backend.reachable
        if changed:
            backend.reachable = bool(connected)
        if ok:
            backend.checks_ok += 1
            backend.checks_failed = 0
            if not backend.healthy and backend.checks_ok >= self.rise:
                self._set_health(backend, True, f"passed {self.rise} checks")
                changed = True
        else:
            backend.checks_failed += 1
            backend.checks_ok = 0
            if backend.healthy and backend.checks_failed >= self.fall:
                self._set_health(backend, False, f"failed {self.fall} checks")
                changed = True
        if changed:
            self._update()

    def connect_failed(self, backend: Backend) -> None:
        """Passive ejection: a refused or failed connection takes it out until checks pass again.

        Only this counts against a backend on the request path: a slow answer or a lost connection
        after the request was sent says the backend is busy or the request was heavy, not that it is dead."""
        backend.checks_ok = 0
        backend.reachable = False
        if backend.healthy:
            backend.ejections += 1
            self._set_health(backend, False, "connection failed (passive ejection)")
        self._update()

    def connect_ok(self, backend: Backend) -> None:
        """A connection to a backend marked unreachable succeeded: in panic it is worth trying again."""
        if not backend.reachable:
            backend.reachable = True
            self._update()

    def _set_health(self, backend: Backend, healthy: bool, why: str) -> None:
        backend.healthy = healthy
        backend.changed_at = time.monotonic()
        (log.info if healthy else log.warning)(
            "%s: backend %s %s: %s", self.name, backend.label, "healthy" if healthy else "ejected", why
        )

    def _update(self) -> None:
        """Work out who may be picked, and whether the pool is in panic: after every change, not per request."""
        known = [b for b in self.backends.values() if not b.removed]
        healthy = [b for b in known if b.healthy]
        panic = bool(known) and (not healthy or len(healthy) < self.panic_below * len(known))
        if panic:
            # Every known backend, but those refusing connections while others accept them; if all refuse,
            # all of them still: each request finds out (and is retried on the next) rather than a blanket 503.
            routable = [b for b in known if b.reachable] or known
        else:
            routable = healthy
        for backend in self.backends.values():
            backend.routable = False
        for backend in routable:
            backend.routable = True
        self._routable = tuple(routable)
        if panic != self.panic:
            self.panic = panic
            if panic:
                self.panics += 1
                log.warning(
                    "%s: PANIC: %d of %d backends healthy; routing to %d of them anyway",
                    self.name,
                    len(healthy),
                    len(known),
                    len(routable),
                )
            else:
                log.info("%s: panic over: %d of %d backends healthy", self.name, len(healthy), len(known))

    # -- selection ---------------------------------------------------------------
    def pick(self, exclude: Collection[Backend] = ()) -> Backend | None:
        """The next backend, or None when the group has none to offer (or all are in ``exclude``).

        ``exclude`` holds the backends this request already tried: empty on the common path. No list is
        built per request: round robin indexes the routable tuple; leastconn walks it once from a rotating
        start, so equally loaded backends take turns."""
        routable = self._routable
        count = len(routable)
        if not count:
            return None
        start = next(self._turn) % count
        if self.policy == "rr":
            if not exclude:
                return routable[start]
            for i in range(count):
                backend = routable[(start + i) % count]
                if backend not in exclude:
                    return backend
            return None
        best: Backend | None = None
        for i in range(count):
            backend = routable[(start + i) % count]
            if (best is None or backend.inflight < best.inflight) and not (exclude and backend in exclude):
                best = backend
        return best

    def by_id(self, backend_id: str) -> Backend | None:
        return self._by_id.get(backend_id)

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "policy": self.policy,
            "panic": self.panic,
            "panic_below": self.panic_below,
            "panic_requests": self.panic_requests,
            "panics": self.panics,
            "backends": [b.describe() for b in sorted(self.backends.values(), key=lambda b: b.address)],
        }
