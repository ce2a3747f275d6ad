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
"""

from __future__ import annotations

from locust import between, tag, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

from loadtests.locust.actions import AuthActions, CloningActions, SessionActions, SplittingActions
from loadtests.locust.knobs import Knobs
from loadtests.locust.target import AUTH, ROUTER, Target, needs_of, target

KNOBS = Knobs.from_env()
CANNOT_RUN = "cannot run here"


class TargetLacksAPart(Exception):
    """The failure a user reports when its class needs a part of the stack the target does not route."""


def _stop(user: ScalecubeUser) -> None:
    raise StopUser()  # from a task: Locust ends the user quietly (from on_start it logs a traceback)


class ScalecubeUser(FastHttpUser):
    """FastHttpUser (geventhttpclient): the load tool must not be the bottleneck on 2 cores."""

    abstract = True
    wait_time = between(KNOBS.wait_min, KNOBS.wait_max)
    connection_timeout = 5.0
    network_timeout = 15.0
    # Connection: close makes every request a new connection, so the cluster's master hands each
    # one to the next worker: how requests spread behind a per-request balancer.
    default_headers = {"Connection": "close"} if KNOBS.new_connections else None

    def on_start(self) -> None:
        """Checks the target has what this class needs, then ``begin``. Otherwise: say why, and stop."""
        here = target(self.host or "", KNOBS.urls)
        # The class's tasks as Locust runs them: --tags / --exclude-tags have filtered them by now.
        refusal = here.refusal(type(self).__name__, needs_of(getattr(t, "locust_tag_set", ()) for t in self.tasks))
        if refusal is None:
            self.begin(here)
            return
        self.environment.events.request.fire(
            request_type="CHECK", name=f"{type(self).__name__} {CANNOT_RUN}", response_time=0, response_length=0,
            exception=TargetLacksAPart(refusal), context={}, url=self.host, response=None,
        )  # fmt: skip
        self.tasks = [_stop]  # the next task this user runs is its last

    def begin(self, here: Target) -> None:
        """What a user of this class sets up before its first task."""

    def session_actions(self, here: Target) -> SessionActions:
        passwords = here.passwords if KNOBS.auth_passwords is None else KNOBS.auth_passwords
        return SessionActions(self.client, KNOBS, passwords=passwords, auth_base=here.base(AUTH))


class CloningUser(ScalecubeUser):
    weight = 4

    def begin(self, here: Target) -> None:
        self.cloning = CloningActions(self.client, KNOBS)

    @tag("cloning", "root")
    @task(3)
    def root(self) -> None:
        self.cloning.root()

    @tag("cloning", "cpu")
    @task(1)
    def cpu(self) -> None:
        self.cloning.cpu()


class SessionUser(ScalecubeUser):
    weight = 3

    def begin(self, here: Target) -> None:
        self.sessions = self.session_actions(here)
        self.sessions.login()

    @tag("sessions", "me")
    @task(20)
    def me(self) -> None:
        self.sessions.me()

    @tag("sessions", "login")
    @task(1)
    def relogin(self) -> None:
        self.sessions.relogin()


class SplittingUser(ScalecubeUser):
    weight = 2

    def begin(self, here: Target) -> None:
        self.splitting = SplittingActions(self.client, KNOBS, here.base(ROUTER))

    @tag("splitting", "users-create")
    @task(2)
    def create(self) -> None:
        self.splitting.create()

    @tag("splitting", "users-read")
    @task(5)
    def read(self) -> None:
        self.splitting.read()

    @tag("splitting", "users-list")
    @task(1)
    def list_country(self) -> None:
        self.splitting.list_country()


class AuthUser(ScalecubeUser):
    weight = 1

    def begin(self, here: Target) -> None:
        self.auth = AuthActions(self.client, KNOBS, here.base(AUTH))
        self.auth.register()

    @tag("auth", "auth-login")
    @task(4)
    def login(self) -> None:
        self.auth.login()

    @tag("auth", "auth-register")
    @task(1)
    def register(self) -> None:
        self.auth.register()


class MixedUser(ScalecubeUser):
    """One visitor doing a bit of everything, in the proportions of a typical page mix."""

    weight = 2

    def begin(self, here: Target) -> None:
        self.cloning = CloningActions(self.client, KNOBS)
        self.sessions = self.session_actions(here)
        self.splitting = SplittingActions(self.client, KNOBS, here.base(ROUTER))
        self.auth = AuthActions(self.client, KNOBS, here.base(AUTH))

    @tag("cloning", "root")
    @task(6)
    def root(self) -> None:
        self.cloning.root()

    @tag("cloning", "cpu")
    @task(1)
    def cpu(self) -> None:
        self.cloning.cpu()

    @tag("sessions", "me")
    @task(5)
    def me(self) -> None:
        self.sessions.me()  # logs in first when it has no session

    @tag("splitting", "users-create")
    @task(1)
    def create(self) -> None:
        self.splitting.create()

    @tag("splitting", "users-read")
    @task(3)
    def read(self) -> None:
        self.splitting.read()

    @tag("splitting", "users-list")
    @task(1)
    def list_country(self) -> None:
        self.splitting.list_country()

    @tag("auth", "auth-login")
    @task(1)
    def auth_login(self) -> None:
        self.auth.login()  # registers first when it has no account
