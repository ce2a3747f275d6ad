"""``scalecube down``: stop the stack a supervisor runs, from any other process.

The supervisor stops its components itself, in order, on SIGTERM. Only if it
does not (it hangs, or it was killed) are the recorded pids killed — each
checked against its start time first, so a reused pid is left alone.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.state import StackState, StateFile

# At least this long, and longer for a bigger stack: the supervisor stops its components one by one, each
# within its recorded stop_timeout (an api cluster drains for up to 35 s, Redis 5 s, a balancer 35 s).
DOWN_TIMEOUT = 60.0
DOWN_MARGIN = 10.0


@dataclass
class DownReport:
    supervisor_pid: int
    components: list[dict[str, Any]] = field(default_factory=list)
    stale: bool = False  # the supervisor was already gone; only leftovers were cleaned up
    killed: list[int] = field(default_factory=list)  # pids that had to be SIGKILLed


def stop_stack(state_dir: Path, timeout: float | None = None) -> DownReport | None:
    """Stop the stack recorded in ``state_dir``; None if there is none.

    ``timeout`` (default: what its components may take, see ``down_timeout``) bounds the
    wait for the supervisor before the recorded processes are killed.
    """
    state_file = StateFile(state_dir)
    state = state_file.read()
    if state is None:
        state_file.remove()  # an unreadable file protects nothing
        return None
    if timeout is None:
        timeout = down_timeout(state)
    report = DownReport(state.supervisor.pid, state.components, stale=not state.supervisor.alive())
    if not report.stale:
        state.supervisor.signal(signal.SIGTERM)
        if not state.supervisor.wait_gone(timeout):
            state.supervisor.kill_tree()  # its components too: they are its children
            report.killed.append(state.supervisor.pid)
    report.killed += kill_leftovers(state)
    state_file.remove(owner=state.supervisor)
    return report


def down_timeout(state: StackState) -> float:
    """How long the supervisor may take to stop its components, one after another."""
    return max(DOWN_TIMEOUT, sum(float(c.get("stop_timeout") or 0) for c in state.components) + DOWN_MARGIN)


def kill_leftovers(state: StackState) -> list[int]:
    """SIGKILL recorded components that outlived their supervisor; returns their pids."""
    leftovers = [ref for ref in state.component_refs() if ref.alive()]
    for ref in leftovers:
        ref.kill_tree()
    return [ref.pid for ref in leftovers]


def clean_stale(state_file: StateFile, state: StackState | None) -> None:
    """A state file whose supervisor is dead: kill what it left running, forget it."""
    if state is not None:
        kill_leftovers(state)
    state_file.remove(owner=state.supervisor if state is not None else None)
