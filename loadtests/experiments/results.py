"""What a demo produces: its phases (one Locust run each, or skipped with a reason) and its claims."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtests.experiments.claims import NOTHING_JUDGED, Claim, Verdict, exit_code
from loadtests.experiments.locust_runner import LoadResult


@dataclass
class Phase:
    name: str  # e.g. "1 process", "cluster (2 workers)", "memory + sticky (1 worker/replica)"
    result: LoadResult | None = None  # None: not run, ``note`` says why
    note: str = ""
    # "host/pid" (X-Served-By) -> the replica that pid belonged to ("127.0.0.2"), when the demo knows it.
    replica_of: dict[str, str] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)  # what else the demo counted: {"crashes": 7}

    @property
    def skipped(self) -> bool:
        return self.result is None

    def per_worker(self) -> list[tuple[str, int]]:
        served = self.result.served_by if self.result else {}
        return sorted(served.items(), key=lambda item: (-item[1], item[0]))

    def per_container(self) -> list[tuple[str, int]]:
        """Requests per replica: the demo's pid -> replica map, else the host part of ``host/pid``
        (a container's hostname under Docker; every local process shares one)."""
        counts: Counter[str] = Counter()
        for served_by, count in (self.result.served_by if self.result else {}).items():
            counts[self.replica_of.get(served_by) or served_by.rsplit("/", 1)[0]] += count
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass
class Table:
    """A table of the demo's own, shown after the phases (terminal, ``<name>.csv``, HTML): e.g. one row per fault."""

    name: str  # its title, and its CSV file's name: "faults" -> faults.csv
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class DemoReport:
    name: str  # the demo's command name: "cloning"
    title: str
    guide_claim: str  # what the guides say, in a sentence
    settings: dict[str, Any] = field(default_factory=dict)  # users, seconds, smoke, target, ...
    phases: list[Phase] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how to read it, what was skipped and why
    tables: list[Table] = field(default_factory=list)  # what the phases' columns cannot show
    # bar charts of the demo's own, in report.html: title -> (label, value) bars, e.g. computations per phase
    bars: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    # line charts of the demo's own, in report.html: title -> series name -> (t, value) points, e.g. per node
    lines: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)
    started: str = ""
    # views of the same metrics while the stack runs (name -> URL): the console's, Prometheus's (--docker)
    live: dict[str, str] = field(default_factory=dict)
    refused: str = ""  # why the demo could not run at all (``demo all`` goes on with the next one): exit 2

    @property
    def exit_code(self) -> int:
        return NOTHING_JUDGED if self.refused else exit_code(self.claims)

    def count(self, verdict: Verdict) -> int:
        return sum(claim.verdict is verdict for claim in self.claims)

    @property
    def outcome(self) -> str:
        """In words, what the exit code says: for the summary of ``demo all`` and the end of the table."""
        if self.refused:
            return f"refused: {self.refused}"
        if self.count(Verdict.FAILS):
            return f"{self.count(Verdict.FAILS)} claim(s) failed"
        if not any(claim.judged for claim in self.claims):
            return "no claim judged: nothing here could fail, so nothing passed"
        return "every judged claim holds"

    def phase(self, name: str) -> Phase:
        return next(phase for phase in self.phases if phase.name == name)

    def result(self, name: str) -> LoadResult | None:
        return self.phase(name).result
