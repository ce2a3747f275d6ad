"""Where each part of the stack answers, and whether it is there at all (no Locust import: ``scalecube
locust`` uses it before Locust starts).

The api answers at the host. Some tasks need more of the stack, as their axis tag says
(``NEEDED_BY_TAG``): ``splitting`` the shard router (``/users``), ``auth`` the auth service
(``/auth/...``). So SplittingUser needs the router, AuthUser auth, MixedUser both, unless ``--tags``
leave it only tasks that need neither. Behind a balancer
(compose's ``lb``, ``scalecube up --api 2``) the host routes them all. A lone api (``scalecube up``: the
api on :8080, auth and the router on ports of their own) routes neither: their URLs then come from
``SCALECUBE_AUTH_URL`` / ``SCALECUBE_ROUTER_URL``, which ``scalecube locust`` reads from the local stack.

A part is *missing* when its probe answers 404: nothing there routes its paths (``scalecube up
--services api``). A part that answers anything else is there, working or not: its failures are the
load test's to show. The password mode follows: where auth is there, the api checks passwords at it
(compose, ``scalecube up``), so session users register first and log in with a password.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ROUTER = "router"
AUTH = "auth"
# What each part answers itself, asked with GET: public paths (the balancers refuse internal ones such as
# /shards), cheap and read-only, refused by the part before it touches a store: the router's /users wants a
# country (422), auth's /auth/verify a token (401). A 404 says nothing there routes them.
PROBES = {ROUTER: "/users", AUTH: "/auth/verify"}
DESCRIBED = {ROUTER: "the shard router (/users)", AUTH: "the auth service (/auth/...)"}
# What a task needs besides the api, by its axis tag (every task of ``loadtests.locust.users`` has one).
NEEDED_BY_TAG = {"splitting": ROUTER, "auth": AUTH}
# The same per class with all its tasks, for ``scalecube locust`` (which does not import Locust); a test
# checks it against the classes' task tags.
NEEDS: dict[str, tuple[str, ...]] = {"SplittingUser": (ROUTER,), "AuthUser": (AUTH,), "MixedUser": (ROUTER, AUTH)}
PROBE_TIMEOUT = 5.0
NOT_ROUTED = 404


@dataclass(frozen=True)
class Part:
    name: str
    url: str  # its base URL: the host, or where it answers on its own
    status: int | None  # the probe's answer; None: none came (refused, timed out)

    @property
    def missing(self) -> bool:
        return self.status == NOT_ROUTED

    def why(self) -> str:
        said = f"answered {self.status}" if self.status is not None else "did not answer"
        return f"GET {self.url}{PROBES[self.name]} {said}"


@dataclass(frozen=True)
class Target:
    host: str
    parts: dict[str, Part]

    def base(self, part: str) -> str:
        """The prefix for a request to ``part``: "" when the host routes it (a relative path), else its URL."""
        url = self.parts[part].url
        return "" if url == self.host else url

    def refusal(self, class_name: str, needs: Iterable[str] | None = None) -> str | None:
        """Why ``class_name`` (needing ``needs``, by default ``NEEDS``'s) cannot run here; None when it can."""
        needs = NEEDS.get(class_name, ()) if needs is None else needs
        lacking = [self.parts[name] for name in needs if self.parts[name].missing]
        if not lacking:
            return None
        what = " and ".join(DESCRIBED[part.name] for part in lacking)
        why = "; ".join(part.why() for part in lacking)
        return (
            f"{class_name} needs {what}, which {self.host} does not route ({why}). Run the whole stack "
            "(compose, or `scalecube up --services all`), or point SCALECUBE_AUTH_URL / SCALECUBE_ROUTER_URL "
            "at them"
        )

    @property
    def passwords(self) -> bool:
        """The api checks passwords at auth wherever auth is there (the stacks set AUTH_URL whenever they run it)."""
        return not self.parts[AUTH].missing


def needs_of(tag_sets: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """The parts that tasks with these tag sets need, in ``PROBES`` order."""
    found = {NEEDED_BY_TAG[tag] for tags in tag_sets for tag in tags if tag in NEEDED_BY_TAG}
    return tuple(part for part in PROBES if part in found)


def probe(host: str, urls: Mapping[str, str | None] | None = None) -> Target:
    """Ask each part once: at its own URL when ``urls`` names one, else at the host."""
    host = host.rstrip("/")
    parts = {}
    for name, path in PROBES.items():
        url = ((urls or {}).get(name) or host).rstrip("/")
        parts[name] = Part(name, url, _status(url + path))
    return Target(host, parts)


_lock = threading.Lock()  # gevent's, once Locust has patched threading: users starting together ask once
_known: dict[tuple[str, tuple[tuple[str, str | None], ...]], Target] = {}


def target(host: str, urls: Mapping[str, str | None] | None = None) -> Target:
    """``probe``, once per host and URLs in this process; a part that did not answer is asked again next time."""
    key = (host.rstrip("/"), tuple(sorted((urls or {}).items())))
    with _lock:
        known = _known.get(key)
        if known is None or any(part.status is None for part in known.parts.values()):
            known = _known[key] = probe(host, urls)
        return known


def _status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the stack is local: no proxy
    try:
        with opener.open(url, timeout=PROBE_TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None
