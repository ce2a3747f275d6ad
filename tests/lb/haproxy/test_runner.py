"""The runner: the environment it builds, and what it says when HAProxy is missing (no binary needed)."""

from __future__ import annotations

import pytest

from lb.haproxy import runner


def test_settings_become_the_files_variables_and_nothing_leaks_from_the_callers_shell():
    settings = runner.HaproxySettings(bind="127.0.0.1:1", sticky=False, api_port=8001)
    env = settings.environment({"PATH": "/bin", "LB_STICKY": "1", "LB_BALANCE": "leastconn"})
    assert env == {"PATH": "/bin", "LB_BIND": "127.0.0.1:1", "LB_STICKY": "0", "API_PORT": "8001"}
    assert settings.url() == "http://127.0.0.1:1"
    assert runner.HaproxySettings(stats_bind="0.0.0.0:9").stats_url() == "http://127.0.0.1:9"


def test_master_worker_command_line_on_the_shared_file():
    assert runner.argv("/x/haproxy") == ["/x/haproxy", "-W", "-db", "-f", str(runner.CONFIG)]


def test_a_missing_haproxy_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runner, "EXTRA_PATH", str(tmp_path))
    with pytest.raises(runner.HaproxyNotFound, match=r"apt-get install haproxy"):
        runner.find_haproxy()


def test_without_haproxy_tests_skip_saying_why_but_fail_under_ci(monkeypatch, tmp_path):
    from tests.support.haproxy import require_haproxy

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(runner, "EXTRA_PATH", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install haproxy"):
        require_haproxy()
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI is set but haproxy is not installed"):
        require_haproxy()
