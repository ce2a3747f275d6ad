"""Which workers should exist, and what to do when one goes: the master's decisions, without processes.

Why a module of its own: the master (``cluster.master``) is plumbing — it spawns
processes, owns the signals, the sockets and the channels. Mixed with that, the
decisions (restart this slot now or later? give up? which worker goes on a scale
down? in which order does a reload go?) could only be tested by starting real
processes and waiting on real clocks. Here they are plain state transitions: the
master reports what happened (``forked``, ``listening``, ``exited``, ...), the
``Supervisor`` updates its books and answers with actions (``Fork``, ``Restart``,
``Drain``, ``GiveUp``, ``Finished``), and time comes from an injected clock. gunicorn's arbiter keeps the
same split between what its signal handlers queue and what its loop decides.

Crash accounting (backoff, giving up) is ``cluster.crashes``'s; this module asks it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from cluster.crashes import CrashPolicy

STARTUP_FAILURE = 3  # uvicorn's exit code when the app cannot be imported or its startup fails


@dataclass(frozen=True)
class Fork:
    """Start a worker in ``slot`` now."""

    slot: int


@dataclass(frozen=True)
class Restart:
    """A worker of ``slot`` crashed: call ``restart_due(slot)`` in ``delay`` seconds (crash loops back off)."""

    slot: int
    delay: float


@dataclass(frozen=True)
class Drain:
    """Stop routing to worker ``worker_id``; it finishes what it holds and exits."""

    worker_id: int


@dataclass(frozen=True)
class GiveUp:
    """Stop the whole cluster with ``exit_code``, for ``reason`` (so its own supervisor restarts it)."""

    exit_code: int
    reason: str


@dataclass(frozen=True)
class Finished:
    """Stopping, and the last worker is gone: the master may exit."""


Action = Fork | Restart | Drain | GiveUp | Finished


@dataclass
class Member:
    """The supervisor's books on one worker process."""

    id: int
    slot: int
    started_at: float
    listening_at: float | None = None
    leaving: bool = False  # told to drain: its exit is expected
    replacing: bool = False  # part of a swap under way (the old one or its successor)


class Supervisor:
    def __init__(self, workers: int, crashes: CrashPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = set(range(workers))
        self.members: dict[int, Member] = {}
        self.crashes = crashes
        self.clock = clock
        self.stopping = False
        self.exit_code = 0
        self.restarts: collections.Counter[int] = collections.Counter()
        self.pending: set[int] = set()  # slots with a restart scheduled
        self._ever_listening = False

    # -- starting ------------------------------------------------------------------
    def start(self) -> list[Action]:
        return [Fork(slot) for slot in sorted(self.slots)]

    def new_slot(self) -> int:
        slot = 0
        while slot in self.slots:
            slot += 1
        self.slots.add(slot)
        return slot

    # -- what happened to the workers ------------------------------------------------
    def forked(self, worker_id: int, slot: int, *, replacing: bool = False) -> None:
        self.members[worker_id] = Member(worker_id, slot, self.clock(), replacing=replacing)

    def listening(self, worker_id: int) -> None:
        member = self.members.get(worker_id)
        if member is not None and not member.leaving:
            member.listening_at = self.clock()
            self._ever_listening = True

    def leaving(self, worker_id: int) -> None:
        """The master told it to drain (scale down, reload, stop, recycle): its exit is expected."""
        if worker_id in self.members:
            self.members[worker_id].leaving = True

    def swapping(self, worker_id: int, active: bool) -> None:
        """``worker_id`` is (or no longer is) part of a swap: its crash is the swap's to handle."""
        if worker_id in self.members:
            self.members[worker_id].replacing = active

    def exited(self, worker_id: int) -> list[Action]:
        member = self.members.pop(worker_id, None)
        if member is None:
            return []
        if self.stopping:
            return [] if self.members else [Finished()]
        if member.leaving:
            return []
        return self._crashed(member)

    def _crashed(self, member: Member) -> list[Action]:
        if not self._ever_listening and member.listening_at is None:
            return self._give_up(STARTUP_FAILURE, "the first workers cannot start (see the worker's error above)")
        now = self.clock()
        delay = self.crashes.record(member.slot, now - member.started_at, now)
        if self.crashes.exhausted():
            return self._give_up(1, f"{self.crashes.recent} worker crashes within {self.crashes.window:g}s")
        if member.replacing or self.covered(member.slot):
            return []  # a swap under way: the worker it was replacing, or its successor, serves the slot
        self.restarts[member.slot] += 1
        self.pending.add(member.slot)
        return [Restart(member.slot, delay)]

    def restart_due(self, slot: int) -> list[Action]:
        """A scheduled restart's time has come."""
        self.pending.discard(slot)
        if self.stopping or self.covered(slot):
            return []
        return [Fork(slot)]

    def covered(self, slot: int) -> bool:
        """Nothing to restart: the slot was scaled away, or a worker not leaving holds it."""
        return slot not in self.slots or any(m.slot == slot and not m.leaving for m in self.members.values())

    # -- what the operator asks ---------------------------------------------------------
    def scale(self, delta: int) -> list[Action]:
        """One worker more (``delta`` > 0) or fewer (never below one)."""
        if self.stopping:
            return []
        if delta > 0:
            return [Fork(self.new_slot())]
        if len(self.slots) <= 1:
            return []
        slot = max(self.slots)
        self.slots.discard(slot)
        return [Drain(m.id) for m in self._in_slot(slot) if not m.leaving]

    def reload_order(self) -> list[int]:
        """The workers a rolling reload replaces, one at a time: the listening ones, by slot."""
        listening = [m for m in self.members.values() if m.listening_at is not None and not m.leaving]
        return [m.id for m in sorted(listening, key=lambda m: (m.slot, m.id))]

    def stop(self, exit_code: int = 0) -> list[Action]:
        """Drain everyone; ``Finished`` once nobody is left. (A second stop is the master's: it kills.)"""
        if self.stopping:
            return []
        self.stopping = True
        self.exit_code = exit_code
        self.pending.clear()
        drains: list[Action] = [Drain(m.id) for m in self.members.values() if not m.leaving]
        return drains if self.members else [Finished()]

    def _give_up(self, exit_code: int, reason: str) -> list[Action]:
        return [GiveUp(exit_code, reason), *self.stop(exit_code)]

    def _in_slot(self, slot: int) -> list[Member]:
        return [m for m in self.members.values() if m.slot == slot]
