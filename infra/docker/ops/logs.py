"""``scalecube docker logs SERVICE``: every container's lines, merged, prefixed like compose (``api-1 | …``).

One thread per container reads its log stream (the SDK's ``container.logs(stream=True)``) into one
bounded queue; the caller prints from the queue. Without ``follow`` the streams end by themselves and
the lines come out merged by their timestamps; with it, in the order they arrive, until interrupted.
"""

from __future__ import annotations

import contextlib
import heapq
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from infra.docker.ops.project import short_name

if TYPE_CHECKING:
    from docker.models.containers import Container

QUEUE_LINES = 1000  # a slow terminal makes the readers wait, not the memory grow
_DONE = object()


@dataclass(frozen=True, order=True)
class LogLine:
    timestamp: str  # RFC 3339 with nanoseconds, from the engine: sorts as text within one zone (UTC)
    source: str
    text: str


def split_timestamp(raw: str) -> tuple[str, str]:
    """``2026-01-01T00:00:00.123456789Z message`` → (timestamp, message); no timestamp → ("", raw)."""
    head, sep, rest = raw.partition(" ")
    if sep and len(head) >= 20 and head[4] == "-" and head[10] == "T":
        return head, rest
    return "", raw


def lines_of(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines from a stream of chunks that may cut lines anywhere (a last partial line included)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.decode(errors="replace").rstrip("\r")
    if pending:
        yield pending.decode(errors="replace").rstrip("\r")


def prefix_width(names: Iterable[str]) -> int:
    return max((len(name) for name in names), default=0)


def format_line(line: LogLine, width: int, *, timestamps: bool = False) -> str:
    stamp = f"{line.timestamp} " if timestamps and line.timestamp else ""
    return f"{line.source:<{width}} | {stamp}{line.text}"


def merge_by_time(per_source: Iterable[list[LogLine]]) -> Iterator[LogLine]:
    """Each source's lines are in order already: a k-way merge keeps them so, and orders across sources."""
    return heapq.merge(*per_source, key=lambda line: line.timestamp)


class LogFollower:
    """Reads the logs of ``containers`` in threads; iterate it for LogLines; ``close()`` stops the reads."""

    def __init__(
        self, containers: list[Container], *, follow: bool, tail: int | None = None, since: datetime | None = None
    ) -> None:
        self.names = {container.id: short_name(container) for container in containers}
        self._containers = containers
        self._options = {
            "stream": True,
            "follow": follow,
            "timestamps": True,
            "tail": "all" if tail is None else tail,
            **({"since": since} if since else {}),
        }
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_LINES)
        self._streams: list[object] = []
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(c,), daemon=True) for c in containers]

    def __enter__(self) -> LogFollower:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: object) -> bool:
        while not self._closed.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.2)
                return True
        return False

    def _read(self, container: Container) -> None:
        source = self.names[container.id]
        try:
            stream = container.logs(**self._options)
            self._streams.append(stream)
            for raw in lines_of(stream):
                stamp, text = split_timestamp(raw)
                if not self._put(LogLine(stamp, source, text)):
                    return
        except Exception as exc:  # noqa: BLE001 — a vanished container ends its stream, not the command
            if not self._closed.is_set():
                self._put(LogLine("", source, f"(log stream ended: {exc})"))
        finally:
            self._put(_DONE)

    def __iter__(self) -> Iterator[LogLine]:
        running = len(self._threads)
        while running and not self._closed.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                running -= 1
            else:
                yield item  # type: ignore[misc]

    def close(self) -> None:
        """Stop reading: closing a following stream unblocks its thread."""
        self._closed.set()
        for stream in self._streams:
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[attr-defined]


def read_merged(
    containers: list[Container], *, tail: int | None = None, since: datetime | None = None
) -> list[LogLine]:
    """The containers' logs up to now (no follow), merged by timestamp."""
    per_source: dict[str, list[LogLine]] = {}
    with LogFollower(containers, follow=False, tail=tail, since=since) as follower:
        for line in follower:
            per_source.setdefault(line.source, []).append(line)
    return list(merge_by_time(per_source.values()))
