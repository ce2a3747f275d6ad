"""The Locust user classes, one per axis of the cube, plus a mixed one.

Tags (``--tags`` / ``--exclude-tags``; each task has its axis tag and its own):

============== ================ ===========================================================
class          axis tag         task tags
============== ================ ===========================================================
CloningUser    ``cloning``      ``root`` (GET /), ``cpu`` (GET /cpu?iterations=N)
SessionUser    ``sessions``     ``me`` (GET /session/me), ``login`` (log out, log in again)
SplittingUser  ``splitting``    ``users-create``, ``users-read``, ``users-list``
AuthUser       ``auth``         ``auth-register``, ``auth-login``
MixedUser      all of the above the same task tags, in one visitor
============== ================ ===========================================================

With no class given Locust runs all five by ``weight``: mostly cheap cloning traffic,
then sessions, splitting, and a little of the expensive auth.

Every class works against any stack that has what it needs (``loadtests.locust.target``: a task's axis
tag says which part it needs, besides the api): the parts are asked where they answer, session users log in the way the api checks logins (with a
password wherever auth is there). A class whose part the target lacks is not offered (``offered``);
one started anyway reports why, once per user, as a failure named ``<class> cannot run here``, and stops.

What each axis does lives in a mixin (``Cloning``, ``Sessions``, ``Splitting``, ``Auth``): its state (the
session a user holds, the user ids it created) and its requests, reported with the names the statistics
show. The user classes only choose which, how often. A part of the stack the host does not route (a lone
api: auth and the router on ports of their own) is asked at its own URL: ``*_base`` prefixes those paths
("" when the host routes them); the statistics' names stay the paths.

Expected refusals are reported under names of their own (a 429 at ``/auth/login`` or ``/auth/register``
is ``/auth/login [429 rate limited]``, counted as a success): they are the service doing its job, and they
must stay visible without counting as failures.
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from locust import between, tag
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager
from locust.exception import StopUser

from loadtests.locust.countries import pick_country
from loadtests.locust.options import cpu_iterations, part_urls, wait_range
from loadtests.locust.target import AUTH, ROUTER, Target, needs_of, target

CANNOT_RUN = "cannot run here"
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


def json_body(response: ResponseContextManager) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:
        return {}
    return body if isinstance(body, dict) else {}


def _served_by(response: ResponseContextManager) -> str:
    served_by = response.headers.get("X-Served-By") if response.headers else None
    return f"served by {served_by}" if served_by else "served by ?"


class TargetLacksAPart(Exception):
    """The failure a user reports when its class needs a part of the stack the target does not route."""


def _stop(user: ScalecubeUser) -> None:
    raise StopUser()  # from a task: Locust ends the user quietly (from on_start it logs a traceback)


class ScalecubeUser(FastHttpUser):
    """FastHttpUser (geventhttpclient): the load tool must not be the bottleneck on 2 cores."""

    abstract = True
    connection_timeout = 5.0
    network_timeout = 15.0

    def __init__(self, environment: Any) -> None:
        self.options = environment.parsed_options  # loadtests.locust.options
        if self.options.new_connections:
            # Connection: close makes every request a new connection, so the cluster's master hands each
            # one to the next worker: how requests spread behind a per-request balancer.
            self.default_headers = {"Connection": "close"}
        super().__init__(environment)

    def wait_time(self) -> float:
        return between(*wait_range(self.options))(self)  # type: ignore[no-any-return]

    def on_start(self) -> None:
        """Checks the target has what this class needs, then ``begin``. Otherwise: say why, and stop."""
        here = target(self.host or "", part_urls(self.options))
        # The class's tasks as Locust runs them: --tags / --exclude-tags have filtered them by now.
        refusal = here.refusal(type(self).__name__, needs_of(getattr(t, "locust_tag_set", ()) for t in self.tasks))
        if refusal is None:
            self.begin(here)
            return
        self.environment.events.request.fire(
            request_type="CHECK",
            name=f"{type(self).__name__} {CANNOT_RUN}",
            response_time=0,
            response_length=0,
            exception=TargetLacksAPart(refusal),
            context={},
            url=self.host,
            response=None,
        )
        self.tasks = [_stop]  # the next task this user runs is its last

    def begin(self, here: Target) -> None:
        """What a user of this class sets up before its first task (each axis's mixin, cooperatively)."""


class Cloning:
    """Cloning (X): the same request to whichever copy answers."""

    client: Any
    options: Any

    def get_root(self) -> None:
        with self.client.get("/", name="/", catch_response=True) as response:
            expect(response, 200)

    def get_cpu(self) -> None:
        path = f"/cpu?iterations={cpu_iterations(self.options)}"
        with self.client.get(path, name="/cpu", catch_response=True) as response:
            expect(response, 200)


class Sessions:
    """Log in once, then ``/session/me`` many times. A 401 there after a successful login means the
    worker that answered does not know the session: reported as ``lost session``, then log in again.

    With passwords (the api checks credentials at auth) the account is registered at auth first
    (``auth_base``: where auth answers) and every login sends the password."""

    client: Any
    options: Any

    def begin(self, here: Target) -> None:
        self.session_user = unique_username("ls")
        self.logged_in = False
        self.passwords = here.passwords if self.options.auth_passwords is None else self.options.auth_passwords
        self.session_auth_base = here.base(AUTH)
        self.registered = not self.passwords  # with auth, the account must exist first
        super().begin(here)  # type: ignore[misc]  # the next axis's, then ScalecubeUser's

    def session_login(self) -> bool:
        if not self.registered and not self._session_register():
            return False
        body: dict[str, str] = {"user": self.session_user}
        if self.passwords:
            body["password"] = PASSWORD
        with self.client.post("/session/login", json=body, name="/session/login", catch_response=True) as response:
            if rate_limited(response, "/session/login"):
                self.logged_in = False
            elif response.status_code == 401 and not self.passwords:
                response.failure(
                    f"401 for a name without a password: {_body(response)}. The api checks passwords "
                    "at auth (AUTH_URL): session users need an account there. They register and send "
                    "one wherever they find auth (unless SCALECUBE_AUTH_PASSWORDS=0): at the host, or "
                    "at SCALECUBE_AUTH_URL (`scalecube locust` sets it for the local stack)"
                )
                self.logged_in = False
            else:
                self.logged_in = expect(response, 200)
        return self.logged_in

    def session_me(self) -> None:
        if not self.logged_in:
            self.session_login()
            return
        with self.client.get("/session/me", name="/session/me", catch_response=True) as response:
            if response.status_code == 401:
                response.request_meta["name"] = LOST_SESSION
                response.failure(
                    f"401 at /session/me after a successful login ({_served_by(response)}): {_body(response)}"
                )
                self.logged_in = False
            else:
                expect(response, 200)
        if not self.logged_in:
            self.session_login()

    def session_relogin(self) -> None:
        """A visitor leaving and coming back: a new session, maybe on another worker."""
        with self.client.post("/session/logout", name="/session/logout", catch_response=True) as response:
            expect(response, 200)
        self.logged_in = False
        self.session_login()

    def _session_register(self) -> bool:
        body = {"username": self.session_user, "password": PASSWORD}
        with self.client.post(
            f"{self.session_auth_base}/auth/register", json=body, name="/auth/register", catch_response=True
        ) as response:
            if rate_limited(response, "/auth/register"):  # too many from this address: try again at the next login
                return False
            self.registered = expect(response, 201, 409)  # 409: registered by an earlier attempt that timed out
        return self.registered


class Splitting:
    """Splitting (Z): users created in a realistic country mix, read back from the shard that owns them."""

    client: Any

    def begin(self, here: Target) -> None:
        self.router_base = here.base(ROUTER)
        self.ids: deque[str] = deque(maxlen=KEEP_IDS)
        self.created = 0
        super().begin(here)  # type: ignore[misc]  # the next axis's, then ScalecubeUser's

    def users_create(self) -> None:
        self.created += 1
        body = {"name": f"{NAMES[self.created % len(NAMES)]} {self.created}", "country": pick_country()}
        with self.client.post(f"{self.router_base}/users", json=body, name="/users", catch_response=True) as response:
            if expect(response, 201):
                user_id = json_body(response).get("id")
                if isinstance(user_id, str):
                    self.ids.append(user_id)
                else:
                    response.failure(f"201 without an id: {_body(response)}")

    def users_read(self) -> None:
        if not self.ids:
            self.users_create()
            return
        user_id = self.ids[int(uuid.uuid4().int % len(self.ids))]
        with self.client.get(
            f"{self.router_base}/users/{user_id}", name="/users/[id]", catch_response=True
        ) as response:
            expect(response, 200)  # a 404 for an id this user created is data lost: a failure

    def users_list(self) -> None:
        path = f"{self.router_base}/users?country={pick_country()}&limit=20"
        with self.client.get(path, name="/users?country=[cc]", catch_response=True) as response:
            expect(response, 200)


class Auth:
    """Decomposing (Y): the auth service on its own: register, log in (argon2: deliberately costly)."""

    client: Any

    def begin(self, here: Target) -> None:
        self.auth_base = here.base(AUTH)
        self.auth_user: str | None = None
        super().begin(here)  # type: ignore[misc]  # the next axis's, then ScalecubeUser's

    def register_at_auth(self) -> None:
        username = unique_username("la")
        body = {"username": username, "password": PASSWORD}
        with self.client.post(
            f"{self.auth_base}/auth/register", json=body, name="/auth/register", catch_response=True
        ) as response:
            if not rate_limited(response, "/auth/register") and expect(response, 201):
                self.auth_user = username

    def login_at_auth(self) -> None:
        if self.auth_user is None:
            self.register_at_auth()
            return
        body = {"username": self.auth_user, "password": PASSWORD}
        with self.client.post(
            f"{self.auth_base}/auth/login", json=body, name="/auth/login", catch_response=True
        ) as response:
            if not rate_limited(response, "/auth/login"):
                expect(response, 200)


# The tasks, each defined once with its axis tag and its own; each class below is a table of their weights.
@tag("cloning", "root")
def root(user: Any) -> None:
    user.get_root()


@tag("cloning", "cpu")
def cpu(user: Any) -> None:
    user.get_cpu()


@tag("sessions", "me")
def me(user: Any) -> None:
    user.session_me()  # logs in first when it has no session


@tag("sessions", "login")
def relogin(user: Any) -> None:
    user.session_relogin()


@tag("splitting", "users-create")
def create(user: Any) -> None:
    user.users_create()


@tag("splitting", "users-read")
def read(user: Any) -> None:
    user.users_read()


@tag("splitting", "users-list")
def list_country(user: Any) -> None:
    user.users_list()


@tag("auth", "auth-register")
def register(user: Any) -> None:
    user.register_at_auth()


@tag("auth", "auth-login")
def login(user: Any) -> None:
    user.login_at_auth()  # registers first when it has no account


@tag("auth", "auth-login")
def auth_login(user: Any) -> None:  # MixedUser's name for it
    user.login_at_auth()


class CloningUser(Cloning, ScalecubeUser):
    weight = 4
    tasks = {root: 3, cpu: 1}


class SessionUser(Sessions, ScalecubeUser):
    weight = 3
    tasks = {me: 20, relogin: 1}

    def begin(self, here: Target) -> None:
        super().begin(here)
        self.session_login()


class SplittingUser(Splitting, ScalecubeUser):
    weight = 2
    tasks = {create: 2, read: 5, list_country: 1}


class AuthUser(Auth, ScalecubeUser):
    weight = 1
    tasks = {login: 4, register: 1}

    def begin(self, here: Target) -> None:
        super().begin(here)
        self.register_at_auth()


class MixedUser(Cloning, Sessions, Splitting, Auth, ScalecubeUser):
    """One visitor doing a bit of everything, in the proportions of a typical page mix."""

    weight = 2
    tasks = {root: 6, cpu: 1, me: 5, create: 1, read: 3, list_country: 1, auth_login: 1}
