"""What the target serves, asked over real HTTP: a part is missing only where its probe answers 404."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.local.ports import free_port
from infra.paths import REPO
from loadtests.locust.target import NEEDS, probe, target


def serving(paths: dict[str, int]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            self.send_response(paths.get(self.path, 404))
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator:
    started: list[ThreadingHTTPServer] = []

    def start(paths: dict[str, int]) -> str:
        server = serving(paths)
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_lone_api_lacks_router_and_auth_and_says_which_class_needs_what(servers):
    api = servers({})
    here = probe(api)
    assert [part.status for part in here.parts.values()] == [404, 404]
    assert here.refusal("CloningUser") is None and here.refusal("SessionUser") is None
    why = here.refusal("MixedUser")
    assert why is not None and "the shard router" in why and "the auth service" in why
    assert f"GET {api}/users answered 404" in why and "scalecube up --services all" in why
    assert not here.passwords  # no auth: a name is enough to log in


def test_parts_answering_elsewhere_are_asked_there_and_their_paths_prefixed(servers):
    api, auth, router = servers({}), servers({"/auth/verify": 401}), servers({"/users": 422})
    here = probe(api + "/", {"auth": auth, "router": router})
    assert all(here.refusal(name) is None for name in NEEDS)
    assert here.base("auth") == auth and here.base("router") == router
    assert here.passwords


def test_behind_a_balancer_everything_is_at_the_host(servers):
    lb = servers({"/users": 422, "/auth/verify": 401})
    here = probe(lb)
    assert here.base("auth") == "" and here.base("router") == ""  # relative paths: the host routes them
    assert here.passwords


def test_a_part_that_fails_is_there_and_one_that_does_not_answer_is_asked_again(servers):
    broken = servers({"/users": 503, "/auth/verify": 401})
    assert probe(broken).refusal("SplittingUser") is None  # there, unwell: the load test shows its failures
    nothing = f"http://127.0.0.1:{free_port()}"  # nothing listens: no answer, not a 404
    first = target(nothing)
    assert first.parts["auth"].status is None and first.refusal("AuthUser") is None
    assert target(nothing) is not first  # no answer is not remembered: asked again
    settled = target(broken)
    assert target(broken) is settled  # a full answer is


def test_what_each_class_needs_is_what_its_tasks_tags_say():
    # `scalecube locust` reads NEEDS without importing Locust; the classes' tasks are the truth. Locust
    # monkey-patches with gevent, so it is imported in a process of its own.
    code = (
        "import json; from loadtests.locust import users; from loadtests.locust.target import needs_of; "
        "print(json.dumps({c: needs_of(getattr(t, 'locust_tag_set', ()) for t in getattr(users, c).tasks) "
        "for c in ('CloningUser', 'SessionUser', 'SplittingUser', 'AuthUser', 'MixedUser')}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from_tasks = {name: tuple(parts) for name, parts in json.loads(done.stdout).items() if parts}
    assert from_tasks == NEEDS
