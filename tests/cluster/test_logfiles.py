"""Reading a cluster's log files back: merged by time, one slot's, the last lines, following (no processes)."""

from __future__ import annotations

import threading
from pathlib import Path

from cluster import logfiles


def _write(path: Path, *lines: str) -> None:
    with open(path, "a") as file:
        file.write("".join(line + "\n" for line in lines))


def test_merged_tail_orders_by_timestamp_and_keeps_untimed_lines_after_their_line(tmp_path: Path):
    _write(
        logfiles.master_log(tmp_path),
        "2026-12-05 10:00:00,100 [master 1] INFO start",
        "2026-12-05 10:00:03,000 [master 1] INFO worker 3 listening",
    )
    _write(
        logfiles.worker_log(tmp_path, 0),
        "2026-12-05 10:00:01,000 ERROR boom",
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
    )
    _write(logfiles.worker_log(tmp_path, 1), "2026-12-05 10:00:02,500 INFO worker=2 slot=1 hello")
    assert logfiles.merged_tail(tmp_path, 10) == [
        "master | 2026-12-05 10:00:00,100 [master 1] INFO start",
        "     0 | 2026-12-05 10:00:01,000 ERROR boom",
        "     0 | Traceback (most recent call last):",
        '     0 |   File "x.py", line 1',
        "     1 | 2026-12-05 10:00:02,500 INFO worker=2 slot=1 hello",
        "master | 2026-12-05 10:00:03,000 [master 1] INFO worker 3 listening",
    ]
    assert logfiles.merged_tail(tmp_path, 2) == logfiles.merged_tail(tmp_path, 10)[-2:]
    assert logfiles.merged_tail(tmp_path, 10, slot=1) == ["     1 | 2026-12-05 10:00:02,500 INFO worker=2 slot=1 hello"]
    assert [label for label, _ in logfiles.sources(tmp_path)] == ["master", "0", "1"]


def test_last_lines_reads_only_the_end_of_a_big_file(tmp_path: Path):
    path = tmp_path / "worker-0.log"
    _write(path, *(f"line {i} " + "x" * 100 for i in range(20_000)))  # ~2 MB, more than one read
    assert [line.split()[1] for line in logfiles.last_lines(path, 3)] == ["19997", "19998", "19999"]
    assert len(logfiles.last_lines(path, 5000)) == 5000
    assert logfiles.last_lines(tmp_path / "missing.log", 3) == []
    assert logfiles.last_lines(path, 0) == []


def test_follow_prints_new_lines_of_every_file_including_new_ones(tmp_path: Path):
    _write(logfiles.worker_log(tmp_path, 0), "old line")  # there before: not printed again
    printed: list[str] = []
    done = threading.Event()
    follower = threading.Thread(
        target=logfiles.follow, args=(tmp_path, printed.append), kwargs={"interval": 0.01, "should_stop": done.is_set}
    )
    follower.start()
    try:
        # Once it prints a line written after it started, it is following (it skips what was there before).
        _wait(lambda: _write(logfiles.worker_log(tmp_path, 9), "ping") or printed)
        _write(logfiles.worker_log(tmp_path, 0), "new in 0")
        _write(logfiles.worker_log(tmp_path, 1), "a new slot's first line")  # a scale-up
        with open(logfiles.worker_log(tmp_path, 0), "a") as file:
            file.write("half a li")  # still being written: printed once it ends
            file.flush()
            _wait(lambda: len([line for line in printed if "ping" not in line]) >= 2)
            file.write("ne\n")
        _wait(lambda: len([line for line in printed if "ping" not in line]) >= 3)
    finally:
        done.set()
        follower.join(10)
    printed = [line for line in printed if "ping" not in line]
    assert sorted(printed) == sorted(["     0 | new in 0", "     1 | a new slot's first line", "     0 | half a line"])


def _wait(predicate) -> None:
    from infra.local.processes import wait_until

    wait_until(predicate, 10, interval=0.01, what="the follower")
