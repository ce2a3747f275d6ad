"""The master runs the app's hook from its own module, and never imports the app itself."""

import subprocess
import sys
import textwrap

import pytest

from cluster.hooks import HookError, load_master_hook, sibling_hook
from infra.local.processes import wait_until


def test_the_hook_is_the_app_packages_master_module():
    assert sibling_hook("services.api.app:app") == "services.api.master:on_master"
    assert sibling_hook("tests.cluster.apps:app") == "tests.cluster.master:on_master"
    assert sibling_hook("app:app") is None  # a top-level module has no package to look in
    assert sibling_hook("pkg.master:app") is None  # the app is the master module: nothing beside it


def test_an_app_without_a_master_module_has_no_hook():
    assert load_master_hook("services.auth.app:app") is None


def test_a_missing_app_or_hook_is_an_error():
    with pytest.raises(HookError, match="no module named 'tests.cluster.no_such_module'"):
        load_master_hook("tests.cluster.no_such_module:app")
    with pytest.raises(HookError, match="ModuleNotFoundError"):
        load_master_hook("tests.cluster.apps:app", "tests.cluster.nothing_here:on_master")
    with pytest.raises(HookError, match="no callable 'missing'"):
        load_master_hook("tests.cluster.apps:app", "tests.cluster.master:missing")


@pytest.mark.parametrize(
    ("app", "explicit"), [("services.api.app:app", ""), ("tests.cluster.apps:app", "services.api.master:on_master")]
)
def test_the_api_hook_loads_without_the_app_or_fastapi(app, explicit):
    # A fresh interpreter: what the master imports, and only that.
    code = textwrap.dedent(f"""
        import sys
        from cluster.hooks import load_master_hook
        hook = load_master_hook({app!r}, {explicit!r})
        assert hook is not None and hook.__module__ == "services.api.master", hook
        loaded = [name for name in ("services.api.app", "tests.cluster.apps", "fastapi", "starlette", "uvicorn")
                  if name in sys.modules]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_hook_runs_in_the_master_without_the_app(start_cluster, tmp_path):
    """A live cluster: the sibling hook (tests/cluster/master.py) echoes a worker's message back as a
    broadcast, and the app module was imported by the workers only, never by the master."""
    imported_by = tmp_path / "imported-by"
    cluster = start_cluster(workers=1, env={"TEST_IMPORTED_BY": str(imported_by)})
    cluster.get("/ask")
    wait_until(
        lambda: any("echo" in m for m in cluster.get("/messages").json()["messages"]), 20, what="the master hook's echo"
    )
    pids = {int(line) for line in imported_by.read_text().split()}
    assert pids == cluster.listening_pids()
    assert cluster.status()["master"]["pid"] not in pids
