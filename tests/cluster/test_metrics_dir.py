"""The master's metrics directory: one per master, and the ones killed masters left are removed by the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster.metrics import DIR_PREFIX, make_metrics_dir
from infra.local.processes import wait_until


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_left_directories_of_dead_pids_and_of_this_pid_are_removed_the_others_kept(tmp_path: Path) -> None:
    dead = tmp_path / f"{DIR_PREFIX}{_dead_pid()}-abc"
    mine = tmp_path / f"{DIR_PREFIX}{os.getpid()}-def"  # a restarted container's PID 1 finds its own number
    alive = tmp_path / f"{DIR_PREFIX}{os.getppid()}-ghi"  # a master still running
    unnamed = tmp_path / f"{DIR_PREFIX}xyz"  # not ours to judge
    other = tmp_path / "something-else-1"
    for folder in (dead, mine, alive, unnamed, other):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    made = Path(make_metrics_dir(str(tmp_path)))
    assert made.parent == tmp_path and made.name.startswith(f"{DIR_PREFIX}{os.getpid()}-") and made.is_dir()
    assert not dead.exists() and not mine.exists()
    assert alive.exists() and unnamed.exists() and other.exists()
    assert not list(made.iterdir())


def test_a_killed_masters_directory_is_removed_by_the_next_master(start_cluster, tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    first = start_cluster(workers=1, env=env)
    master = first.proc.pid  # `scalecube serve` is the master itself
    (left,) = temp.glob(f"{DIR_PREFIX}{master}-*")
    first.signal(signal.SIGKILL)  # no cleanup runs
    first.wait(5)
    assert left.is_dir()
    second = start_cluster(workers=1, env=env)
    assert not left.exists()
    (kept,) = temp.glob(f"{DIR_PREFIX}*")
    assert kept.name.startswith(f"{DIR_PREFIX}{second.proc.pid}-")
    second.stop()
    wait_until(lambda: not kept.exists(), 5, what="the stopped master to remove its directory")
