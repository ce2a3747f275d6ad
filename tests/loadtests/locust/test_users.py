"""Each user class against a real api cluster (2 workers behind rr, Redis)."""

from __future__ import annotations

from tests.loadtests.locust.runner import run_locust

LOST = "lost session"


def test_cloning_user_gets_root_and_cpu_without_failures(api_redis_sessions, tmp_path):
    result = run_locust(tmp_path, api_redis_sessions.url, classes=("CloningUser",))
    assert result.code == 0, result.explain()
    assert result.requests("/") > 10 and result.requests("/cpu") > 2, result.explain()
    assert result.failures("Aggregated") == 0, result.explain()
    assert result.names() == {"/", "/cpu"}


def test_session_user_never_loses_a_session_kept_in_redis(api_redis_sessions, tmp_path):
    # A new connection per request: rr hands each to the next worker, so /session/me really
    # crosses workers; with Redis every worker finds the session.
    result = run_locust(
        tmp_path, api_redis_sessions.url, classes=("SessionUser",), env={"SCALECUBE_NEW_CONNECTIONS": "1"}
    )
    assert result.code == 0, result.explain()
    assert result.requests("/session/me") > 10, result.explain()
    assert result.requests(LOST) == 0 and result.failures("Aggregated") == 0, result.explain()


def test_session_user_reports_lost_sessions_kept_in_worker_memory(api_memory_sessions, tmp_path):
    result = run_locust(
        tmp_path, api_memory_sessions.url, classes=("SessionUser",), env={"SCALECUBE_NEW_CONNECTIONS": "1"}
    )
    assert result.failures(LOST) > 2, result.explain()
    # The loss is named as such, and nothing else fails: login works on every worker.
    assert result.failures(LOST) == result.failures("Aggregated"), result.explain()
    assert result.failures("/session/me") == 0 and result.failures("/session/login") == 0
    assert result.code == 1  # Locust's own rule without thresholds: failures -> 1


def test_mixed_user_limited_by_tags_to_the_api(api_redis_sessions, tmp_path):
    result = run_locust(tmp_path, api_redis_sessions.url, "--tags", "cloning", "sessions", classes=("MixedUser",))
    assert result.code == 0, result.explain()
    assert {"/", "/session/me", "/session/login"} <= result.names() <= {"/", "/cpu", "/session/me", "/session/login"}, (
        result.explain()
    )


def test_a_tag_runs_only_the_classes_that_have_it(api_redis_sessions, tmp_path):
    # No class given: all five classes, of which only CloningUser and MixedUser have a `root` task.
    # The others are left out instead of crashing with "No tasks defined".
    result = run_locust(tmp_path, api_redis_sessions.url, "--tags", "root", users=4)
    assert result.code == 0, result.explain()
    assert result.names() == {"/"}, result.explain()
    assert "not run: AuthUser, SessionUser, SplittingUser" in result.output
