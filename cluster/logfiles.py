"""A cluster's output on disk, and reading it back (``scalecube logs``).

With a log dir (``scalecube serve --log-dir``, which ``scalecube start`` always
gives) each worker writes its stdout and stderr straight to ``worker-<slot>.log``
there: the master opens the file for the worker as it spawns it, so not one
line passes through the master's loop (which hands out connections), and a
worker's output survives the master. The slot is the worker's stable number,
PM2's instance id: a replacement (crash, reload, recycle) appends to its slot's
file, and the worker's log lines carry its own id and pid. ``master.log`` is
the master's own output (``scalecube start`` sends it there).

Merged views order lines by their leading timestamp (every line the runtime,
uvicorn and the services log starts with one); a line without one (a
traceback's) stays after the line it follows in its file.
"""

from __future__ import annotations

import heapq
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

MASTER = "master"
_WORKER_LOG = re.compile(r"worker-(\d+)\.log")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:[.,](\d+))?")
FOLLOW_INTERVAL = 0.2


def master_log(log_dir: Path) -> Path:
    return log_dir / "master.log"


def worker_log(log_dir: Path, slot: int) -> Path:
    return log_dir / f"worker-{slot}.log"


def sources(log_dir: Path, slot: int | None = None) -> list[tuple[str, Path]]:
    """``(label, file)`` of what is there: the master's log, then each slot's (or only ``slot``'s)."""
    if slot is not None:
        return [(str(slot), worker_log(log_dir, slot))]
    found = [(int(m[1]), path) for path in _listing(log_dir) if (m := _WORKER_LOG.fullmatch(path.name))]
    master = master_log(log_dir)
    return ([(MASTER, master)] if master.exists() else []) + [(str(n), path) for n, path in sorted(found)]


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path``, reading backwards from its end (logs grow without bound)."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as file:
            end = file.seek(0, os.SEEK_END)
            size = min(end, 64 * 1024)
            while True:
                file.seek(end - size)
                data = file.read(size)
                if data.count(b"\n") > count or size == end:
                    break
                size = min(end, size * 4)
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[-count:]


def merged_tail(log_dir: Path, count: int, slot: int | None = None) -> list[str]:
    """The last ``count`` lines of the cluster's logs (or of one slot's), time-ordered, each labelled."""
    keyed = [_keyed(label, last_lines(path, count)) for label, path in sources(log_dir, slot)]
    merged = list(heapq.merge(*keyed, key=lambda item: item[0]))
    return [line for _, line in merged[-count:]]


def _keyed(label: str, lines: list[str]) -> Iterator[tuple[str, str]]:
    key = ""
    for line in lines:
        if match := _TIMESTAMP.match(line):
            key = f"{match[1]} {match[2]}.{(match[3] or '').ljust(6, '0')}"
        yield key, labelled(label, line)


def labelled(label: str, line: str) -> str:
    return f"{label:>6} | {line}"


def follow(
    log_dir: Path,
    write: Callable[[str], None],
    slot: int | None = None,
    interval: float = FOLLOW_INTERVAL,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Write every line added from now on (``tail -F``, over each file), until ``should_stop()``.

    New files (a worker in a new slot, after a scale-up) are read from their
    start; a file that shrank (truncated by hand) from its new start.
    """
    offsets = {path: _size(path) for _, path in sources(log_dir, slot)}
    partial: dict[Path, bytes] = {}
    while not should_stop():
        for label, path in sources(log_dir, slot):
            offset, size = offsets.get(path, 0), _size(path)
            if size < offset:
                offset, partial[path] = 0, b""
            if size == offset:
                continue
            try:
                with open(path, "rb") as file:
                    file.seek(offset)
                    data = partial.pop(path, b"") + file.read(size - offset)
            except OSError:
                continue
            offsets[path] = size
            *complete, rest = data.split(b"\n")
            partial[path] = rest  # a line still being written: printed once it ends
            for line in complete:
                write(labelled(label, line.decode(errors="replace")))
        time.sleep(interval)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
