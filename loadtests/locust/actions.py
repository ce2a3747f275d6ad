"""What a user does on each axis of the cube, apart from which Locust user class does it.

Each ``*Actions`` object belongs to one Locust user (its HTTP client, its state: the
session it holds, the user ids it created) and reports every request with the names
the statistics show. The user classes (``users``) only choose which actions, how often.

A part of the stack the host does not route (a lone api: auth and the router on ports of their own)
is asked at its own URL: ``base`` prefixes those paths ("" when the host routes them); the statistics'
names stay the paths. Where each part is: ``loadtests.locust.target``.

Expected refusals are reported under names of their own (a 429 at ``/auth/login`` or
``/auth/register`` is ``/auth/login [429 rate limited]``, counted as a success): they are the service doing
its job, and they must stay visible without counting as failures.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from locust.contrib.fasthttp import ResponseContextManager

from loadtests.locust.countries import pick_country
from loadtests.locust.knobs import Knobs

# auth's password policy (services.auth.policy): 10 to 128 characters, not a common password, not the username.
PASSWORD = "locust-load-password"
LOST_SESSION = "lost session"
RATE_LIMITED = "[429 rate limited]"
KEEP_IDS = 200  # user ids a splitting user remembers to read back
NAMES = ("ada", "alan", "grace", "edsger", "barbara", "donald", "margaret", "ken", "linus", "radia")


def unique_username(prefix: str) -> str:
    """Lowercase letters, digits and ``-``: valid for both the api's sessions and auth (3 to 32)."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def expect(response: ResponseContextManager, *statuses: int) -> bool:
    """Success if the status is one of ``statuses``; else a failure saying what came back."""
    if response.status_code in statuses:
        response.success()
        return True
    if not response.status_code:
        response.failure(f"no response: {response.error!r}")
    else:
        response.failure(f"{response.status_code} (expected {'/'.join(map(str, statuses))}): {_body(response)}")
    return False


def rate_limited(response: ResponseContextManager, name: str) -> bool:
    """A 429 is reported under its own name, as a success: the limit working, not the service failing."""
    if response.status_code != 429:
        return False
    response.request_meta["name"] = f"{name} {RATE_LIMITED}"
    response.success()
    return True


def _body(response: ResponseContextManager, limit: int = 160) -> str:
    try:
        return (response.text or "")[:limit]
    except Exception:  # undecodable body: the status says enough
        return ""


class Actions:
    def __init__(self, client: Any, knobs: Knobs, base: str = "") -> None:
        self.client = client
        self.knobs = knobs
        self.base = base  # where this part answers: "" for the host


class CloningActions(Actions):
    """Cloning (X): the same request to whichever copy answers."""

    def root(self) -> None:
        with self.client.get("/", name="/", catch_response=True) as response:
            expect(response, 200)

    def cpu(self) -> None:
        path = f"/cpu?iterations={self.knobs.cpu_iterations}"
        with self.client.get(path, name="/cpu", catch_response=True) as response:
            expect(response, 200)


class SessionActions(Actions):
    """Log in once, then ``/session/me`` many times. A 401 there after a successful login means the
    worker that answered does not know the session: reported as ``lost session``, then log in again.

    With ``passwords`` (the api checks credentials at auth) the account is registered at auth first
    (``auth_base``: where auth answers) and every login sends the password."""

    def __init__(self, client: Any, knobs: Knobs, *, passwords: bool, auth_base: str = "") -> None:
        super().__init__(client, knobs)
        self.username = unique_username("ls")
        self.logged_in = False
        self.passwords = passwords
        self.auth_base = auth_base
        self.registered = not passwords  # with auth, the account must exist first

    def login(self) -> bool:
        if not self.registered and not self._register():
            return False
        body: dict[str, str] = {"user": self.username}
        if self.passwords:
            body["password"] = PASSWORD
        with self.client.post("/session/login", json=body, name="/session/login", catch_response=True) as response:
            if rate_limited(response, "/session/login"):
                self.logged_in = False
            elif response.status_code == 401 and not self.passwords:
                response.failure(f"401 for a name without a password: {_body(response)}. The api checks passwords "
                                 "at auth (AUTH_URL): session users need an account there. They register and send "
                                 "one wherever they find auth (unless SCALECUBE_AUTH_PASSWORDS=0): at the host, or "
                                 "at SCALECUBE_AUTH_URL (`scalecube locust` sets it for the local stack)")  # fmt: skip
                self.logged_in = False
            else:
                self.logged_in = expect(response, 200)
        return self.logged_in

    def me(self) -> None:
        if not self.logged_in:
            self.login()
            return
        with self.client.get("/session/me", name="/session/me", catch_response=True) as response:
            if response.status_code == 401:
                response.request_meta["name"] = LOST_SESSION
                response.failure(f"401 at /session/me after a successful login ({_served_by(response)}): {_body(response)}")
                self.logged_in = False
            else:
                expect(response, 200)
        if not self.logged_in:
            self.login()

    def logout(self) -> None:
        with self.client.post("/session/logout", name="/session/logout", catch_response=True) as response:
            expect(response, 200)
        self.logged_in = False

    def relogin(self) -> None:
        """A visitor leaving and coming back: a new session, maybe on another worker."""
        self.logout()
        self.login()

    def _register(self) -> bool:
        body = {"username": self.username, "password": PASSWORD}
        with self.client.post(f"{self.auth_base}/auth/register", json=body, name="/auth/register",
                              catch_response=True) as response:  # fmt: skip
            if rate_limited(response, "/auth/register"):  # too many from this address: try again at the next login
                return False
            self.registered = expect(response, 201, 409)  # 409: registered by an earlier attempt that timed out
        return self.registered


class SplittingActions(Actions):
    """Splitting (Z): users created in a realistic country mix, read back from the shard that owns them."""

    def __init__(self, client: Any, knobs: Knobs, base: str = "") -> None:
        super().__init__(client, knobs, base)
        self.ids: deque[str] = deque(maxlen=KEEP_IDS)
        self.created = 0

    def create(self) -> None:
        self.created += 1
        body = {"name": f"{NAMES[self.created % len(NAMES)]} {self.created}", "country": pick_country()}
        with self.client.post(f"{self.base}/users", json=body, name="/users", catch_response=True) as response:
            if expect(response, 201):
                user_id = _json(response).get("id")
                if isinstance(user_id, str):
                    self.ids.append(user_id)
                else:
                    response.failure(f"201 without an id: {_body(response)}")

    def read(self) -> None:
        if not self.ids:
            self.create()
            return
        user_id = self.ids[int(uuid.uuid4().int % len(self.ids))]
        with self.client.get(f"{self.base}/users/{user_id}", name="/users/[id]", catch_response=True) as response:
            expect(response, 200)  # a 404 for an id this user created is data lost: a failure

    def list_country(self) -> None:
        path = f"{self.base}/users?country={pick_country()}&limit=20"
        with self.client.get(path, name="/users?country=[cc]", catch_response=True) as response:
            expect(response, 200)


class AuthActions(Actions):
    """Decomposing (Y): the auth service on its own: register, log in (argon2: deliberately costly)."""

    def __init__(self, client: Any, knobs: Knobs, base: str = "") -> None:
        super().__init__(client, knobs, base)
        self.username: str | None = None

    def register(self) -> None:
        username = unique_username("la")
        body = {"username": username, "password": PASSWORD}
        with self.client.post(f"{self.base}/auth/register", json=body, name="/auth/register",
                              catch_response=True) as response:  # fmt: skip
            if not rate_limited(response, "/auth/register") and expect(response, 201):
                self.username = username

    def login(self) -> None:
        if self.username is None:
            self.register()
            return
        body = {"username": self.username, "password": PASSWORD}
        with self.client.post(f"{self.base}/auth/login", json=body, name="/auth/login", catch_response=True) as response:
            if not rate_limited(response, "/auth/login"):
                expect(response, 200)


def _json(response: ResponseContextManager) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:
        return {}
    return body if isinstance(body, dict) else {}


def _served_by(response: ResponseContextManager) -> str:
    served_by = response.headers.get("X-Served-By") if response.headers else None
    return f"served by {served_by}" if served_by else "served by ?"
