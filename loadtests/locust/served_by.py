"""Who served the load: every response's ``X-Served-By`` (``host/pid``), counted per request name.

With ``SCALECUBE_SERVED_BY_FILE`` set, the counts are written at test stop (and again at quit,
once every worker's last report is in) as JSON ``{"host/pid": count, ...}``: the total over
all request names. Next to it, ``<stem>.by-name<suffix>`` holds ``{name: {"host/pid": count}}``.

Distributed (``--processes N``, or ``--master`` + ``--worker``s): each worker sends what it
counted since its last report along with its statistics (``report_to_master``), the master
adds it up (``worker_report``) and writes the file. Importing this module registers the listeners.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.locust import options as _options  # noqa: F401  (--served-by-file)

log = logging.getLogger("scalecube.locust.served_by")

HEADER = "X-Served-By"
REPORT_KEY = "scalecube_served_by"


class ServedByTally:
    def __init__(self) -> None:
        self.by_name: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def count(self, name: str, served_by: str) -> None:
        self.by_name[name][served_by] += 1

    def merge(self, by_name: dict[str, dict[str, int]]) -> None:
        for name, counts in by_name.items():
            self.by_name[name].update(counts)

    def drain(self) -> dict[str, dict[str, int]]:
        """What was counted since the last drain (a worker's report), and start again."""
        drained = {name: dict(counts) for name, counts in self.by_name.items()}
        self.by_name.clear()
        return drained

    def clear(self) -> None:
        self.by_name.clear()

    def totals(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for counts in self.by_name.values():
            total.update(counts)
        return dict(total.most_common())

    def write(self, path: Path) -> None:
        by_name_path = path.with_name(f"{path.stem}.by-name{path.suffix or '.json'}")
        _write_json(path, self.totals())
        _write_json(by_name_path, {name: dict(counts.most_common()) for name, counts in sorted(self.by_name.items())})


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(partial, path)  # readers never see half a file


TALLY = ServedByTally()


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


@events.request.add_listener
def _count(name: str, response: Any = None, **_: Any) -> None:
    headers = getattr(response, "headers", None)
    served_by = headers.get(HEADER) if headers else None
    if served_by:
        TALLY.count(name, served_by)


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    TALLY.clear()


@events.report_to_master.add_listener
def _send(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data[REPORT_KEY] = TALLY.drain()


@events.worker_report.add_listener
def _receive(client_id: str, data: dict[str, Any], **_: Any) -> None:
    TALLY.merge(data.get(REPORT_KEY) or {})


def _write(environment: Environment, **_: Any) -> None:
    output = getattr(environment.parsed_options, "served_by_file", None)
    if output and not _is_worker(environment):
        try:
            TALLY.write(Path(output))
        except OSError as exc:
            log.error("could not write the served-by tally to %s: %s", output, exc)


events.test_stop.add_listener(_write)
events.quitting.add_listener(_write)
