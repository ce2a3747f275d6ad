"""The outage demo's visitors (``scalecube demo outage``): every route of the stack, each request named
by what it needs, each one recorded.

A locustfile of its own (``locust -f loadtests/locust/outage.py OutageUser``), so the default mix of
``scalecube locust`` and its five classes stay as they are. One ``OutageUser`` does what a visitor of
the whole stack does: the api's ``/`` and ``/cpu``, a login and ``/session/me`` (the api asks auth and
keeps the session in its Redis), ``/auth/login`` (auth itself, through the balancer), and users created,
read and listed through the router on both shards. ``loadtests.locust.dependencies`` says what each
request name needs.

Tags leave out what a stack lacks (``--exclude-tags auth router``): ``api`` (/, /cpu), ``sessions``,
``auth``, ``router``. With ``SCALECUBE_REQUEST_LOG`` set, every request is written there at test stop,
one JSON line each (``RequestRecord``): when it was sent, how long it took, its status and, for an error,
the ``dependency`` its body names. Local runs only: with distributed workers nothing is written.
"""

from __future__ import annotations

import logging
import os
import random
from collections import deque
from pathlib import Path
from typing import Any

from locust import events, tag, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests.locust import run_clock, served_by, tag_selection  # noqa: F401  (their listeners)
from loadtests.locust.dependencies import (
    CLIENT_TIMEOUT,
    REQUEST_LOG_ENV,
    RequestRecord,
    create_name,
    error_fields,
    list_name,
    read_name,
    shards,
)
from loadtests.locust.users import PASSWORD, Cloning, ScalecubeUser, expect, json_body, rate_limited, unique_username

log = logging.getLogger("scalecube.locust.outage")

KEEP_IDS = 50  # user ids remembered per shard, to read back


class OutageUser(Cloning, ScalecubeUser):
    network_timeout = CLIENT_TIMEOUT  # the demo's definition of a hang (the same 15 s as every user class)

    def on_start(self) -> None:
        self.username = unique_username("lo")
        self.registered = not self.options.auth_passwords  # with auth, the account must exist first
        self.logged_in = False
        self.ids: dict[str, deque[str]] = {shard: deque(maxlen=KEEP_IDS) for shard in shards()}

    @tag("api")
    @task(6)
    def root(self) -> None:
        self.get_root()

    @tag("api")
    @task(1)
    def cpu(self) -> None:
        self.get_cpu()

    @tag("sessions")
    @task(5)
    def me(self) -> None:
        if not self.logged_in:
            self._login()
            return
        with self.client.get("/session/me", name="/session/me", catch_response=True) as response:
            expect(response, 200)
            if response.status_code == 401:  # lost (a failure above): log in again next time
                self.logged_in = False

    @tag("auth")
    @task(1)
    def auth_login(self) -> None:
        if not self._register():
            return
        body = {"username": self.username, "password": PASSWORD}
        with self.client.post("/auth/login", json=body, name="/auth/login", catch_response=True) as response:
            if not rate_limited(response, "/auth/login"):
                expect(response, 200)

    @tag("router")
    @task(2)
    def create(self) -> None:
        shard = random.choice(list(shards()))
        body = {"name": f"outage {len(self.ids[shard])}", "country": random.choice(shards()[shard])}
        with self.client.post("/users", json=body, name=create_name(shard), catch_response=True) as response:
            if expect(response, 201):
                user_id = json_body(response).get("id")
                if isinstance(user_id, str):
                    self.ids[shard].append(user_id)
                else:
                    response.failure(f"201 without an id: {response.text[:160]}")

    @tag("router")
    @task(4)
    def read(self) -> None:
        shard = random.choice(list(shards()))
        if not self.ids[shard]:
            return  # nothing created there yet (create() fills both in time)
        user_id = random.choice(self.ids[shard])
        with self.client.get(f"/users/{user_id}", name=read_name(shard), catch_response=True) as response:
            expect(response, 200)  # a 404 for an id this user created is data lost: a failure

    @tag("router")
    @task(1)
    def list_country(self) -> None:
        shard = random.choice(list(shards()))
        path = f"/users?country={random.choice(shards()[shard])}&limit=20"
        with self.client.get(path, name=list_name(shard), catch_response=True) as response:
            expect(response, 200)

    def _register(self) -> bool:
        if self.registered:
            return True
        body = {"username": self.username, "password": PASSWORD}
        with self.client.post("/auth/register", json=body, name="/auth/register", catch_response=True) as response:
            self.registered = expect(response, 201, 409)  # 409: an earlier attempt got through, its answer did not
        return self.registered

    def _login(self) -> None:
        if not self._register():
            return
        body: dict[str, str] = {"user": self.username}
        if self.options.auth_passwords:
            body["password"] = PASSWORD
        with self.client.post("/session/login", json=body, name="/session/login", catch_response=True) as response:
            self.logged_in = expect(response, 200)


# -- every request, recorded ------------------------------------------------------------------------


class RequestLog:
    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def add(self, name: str, start_time: float, response_time: float, response: Any, exception: Any) -> None:
        status = int(getattr(response, "status_code", 0) or 0)
        dependency, error = error_fields(status, _content(response)) if status >= 400 else (None, None)
        if not status and exception is not None:  # no answer: the connection's own error, not Locust's wrapper
            cause = getattr(response, "error", None) or exception
            error = f"{type(cause).__name__}: {cause}"[:200]
        self.records.append(
            RequestRecord(name, start_time, round(response_time, 1), status, exception is None, dependency, error)
        )

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(record.to_json() + "\n" for record in self.records), encoding="utf-8")
        os.replace(partial, path)  # the demo never reads half a file


def _content(response: Any) -> bytes | None:
    try:
        return response.content  # type: ignore[no-any-return]
    except Exception:  # no body (the connection broke): the status says enough
        return None


REQUESTS = RequestLog()
OUTPUT = os.environ.get(REQUEST_LOG_ENV) or None


@events.request.add_listener
def _record(
    name: str, start_time: float, response_time: float, response: Any = None, exception: Any = None, **_: Any
) -> None:
    if OUTPUT:
        REQUESTS.add(name, start_time, response_time, response, exception)


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    REQUESTS.records.clear()


def _write(environment: Environment, **_: Any) -> None:
    if OUTPUT and not isinstance(environment.runner, (WorkerRunner, MasterRunner)):
        try:
            REQUESTS.write(Path(OUTPUT))
        except OSError as exc:
            log.error("could not write the request log to %s: %s", OUTPUT, exc)


events.test_stop.add_listener(_write)
events.quitting.add_listener(_write)
