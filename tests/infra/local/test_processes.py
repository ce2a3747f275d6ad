"""The one process harness (``ManagedProcess``): the environment it is given, its log across relaunches,
a stop that escalates step by step and, detached, kills what the process left behind. Tiny real processes."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from infra.local.pids import ProcessRef
from infra.local.processes import ManagedProcess, wait_until

# Ignores SIGTERM and SIGUSR1, forks a grandchild that sleeps, prints its pid, then waits.
STUBBORN = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
time.sleep(60)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_env_is_added_to_this_environment_or_to_the_one_given(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_OUTER", "outer")
    show = python("import os; print(os.environ.get('HARNESS_OUTER'), os.environ.get('HARNESS_ADDED'))")
    added = ManagedProcess(show, env={"HARNESS_ADDED": "added"}, log_path=tmp_path / "added.log")
    assert added.wait(30) == 0
    assert added.log().split() == ["outer", "added"]
    exact = ManagedProcess(show, environ={"PATH": "/usr/bin"}, log_path=tmp_path / "exact.log")
    assert exact.wait(30) == 0
    assert exact.log().split() == ["None", "None"]  # only what it was given


def test_a_relaunch_appends_to_the_log_the_first_launch_replaces_it(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("a previous stack's\n")
    ManagedProcess(python("print('first')"), log_path=log).wait(30)
    ManagedProcess(python("print('second')"), log_path=log, append=True).wait(30)
    assert log.read_text().split() == ["first", "second"]


def test_a_detached_process_has_its_own_session_and_no_stdin(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getsid(0) == os.getpid(), sys.stdin.read() == '')"
    process = ManagedProcess(python(code), log_path=tmp_path / "d.log", detached=True)
    assert process.wait(30) == 0
    assert process.log().split() == ["True", "True"]
    assert process.ref is not None and process.ref.pid == process.pid


def test_stop_escalates_through_its_steps_then_kills_the_whole_tree_when_detached(tmp_path: Path) -> None:
    process = ManagedProcess(python(STUBBORN), log_path=tmp_path / "s.log", detached=True)
    grandchild = int(wait_until(lambda: process.log().strip(), 30, what="the grandchild's pid"))
    grandchild_ref = ProcessRef.of(grandchild)
    assert grandchild_ref is not None
    process.stop(steps=((signal.SIGUSR1, 0.2), (signal.SIGTERM, 0.2)))  # both ignored: killed, and reaped
    assert process.poll() is not None
    assert grandchild_ref.wait_gone(10), "the grandchild was killed with it"
    process.stop()  # twice: nothing more to do


def test_stop_sends_sigterm_and_waits_for_a_willing_process(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(3)); "
        "print('up', flush=True); time.sleep(60)"
    )
    process = ManagedProcess(python(code), log_path=tmp_path / "w.log")
    wait_until(lambda: "up" in process.log(), 30, what="the process to start")
    assert process.stop(timeout=20) == 3
    assert process.poll() == 3  # reaped
