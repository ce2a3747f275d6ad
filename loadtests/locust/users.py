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
"""

from __future__ import annotations

from locust import between, tag, task
from locust.contrib.fasthttp import FastHttpUser

from loadtests.locust.actions import AuthActions, CloningActions, SessionActions, SplittingActions
from loadtests.locust.knobs import Knobs

KNOBS = Knobs.from_env()


class ScalecubeUser(FastHttpUser):
    """FastHttpUser (geventhttpclient): the load tool must not be the bottleneck on 2 cores."""

    abstract = True
    wait_time = between(KNOBS.wait_min, KNOBS.wait_max)
    connection_timeout = 5.0
    network_timeout = 15.0
    # Connection: close makes every request a new connection, so the cluster's master hands each
    # one to the next worker: how requests spread behind a per-request balancer.
    default_headers = {"Connection": "close"} if KNOBS.new_connections else None


class CloningUser(ScalecubeUser):
    weight = 4

    def on_start(self) -> None:
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

    def on_start(self) -> None:
        self.sessions = SessionActions(self.client, KNOBS)
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

    def on_start(self) -> None:
        self.splitting = SplittingActions(self.client, KNOBS)

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

    def on_start(self) -> None:
        self.auth = AuthActions(self.client, KNOBS)
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

    def on_start(self) -> None:
        self.cloning = CloningActions(self.client, KNOBS)
        self.sessions = SessionActions(self.client, KNOBS)
        self.splitting = SplittingActions(self.client, KNOBS)
        self.auth = AuthActions(self.client, KNOBS)

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
