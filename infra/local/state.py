"""``stack.json`` in the state dir: which supervisor owns the stack, and the processes it started.

Written as soon as the supervisor claims the dir (phase ``starting``), again as
each component is launched (so nothing started is ever unrecorded), once more
when everything is ready (phase ``ready``), and removed when the stack stops.
Every write is atomic: a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.local.errors import StackError
from infra.local.pids import ProcessRef

STATE_NAME = "stack.json"
STARTING, READY = "starting", "ready"


def default_state_dir() -> Path:
    return Path(os.environ.get("SCALECUBE_STATE_DIR") or Path.home() / ".local" / "state" / "scalecube")


def prepare_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(
            f"cannot use {path} as the state dir: {exc.strerror or exc} (pick another with --state-dir)"
        ) from None


@dataclass
class StackState:
    supervisor: ProcessRef
    phase: str = STARTING
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    components: list[dict[str, Any]] = field(default_factory=list)  # Component.describe() of each one launched

    def component_refs(self) -> list[ProcessRef]:
        return [ProcessRef(c["pid"], c["started"]) for c in self.components if c.get("pid") and c.get("started")]

    def to_json(self) -> dict[str, Any]:
        return {
            "supervisor": {"pid": self.supervisor.pid, "started": self.supervisor.started},
            "phase": self.phase,
            "started_at": self.started_at,
            "components": self.components,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StackState:
        supervisor = data["supervisor"]
        return cls(
            ProcessRef(int(supervisor["pid"]), float(supervisor["started"])),
            str(data["phase"]),
            str(data["started_at"]),
            list(data["components"]),
        )


class StateFile:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_NAME

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> StackState | None:
        """The recorded stack; None if there is no file or it cannot be understood."""
        try:
            return StackState.from_json(json.loads(self.path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def create(self, state: StackState) -> None:
        """Claim the state dir: raises ``FileExistsError`` if a state file is already there."""
        temporary = self._write_temporary(state)
        try:
            os.link(temporary, self.path)  # atomic, complete, and fails if the name exists
        finally:
            temporary.unlink()

    def write(self, state: StackState) -> None:
        os.replace(self._write_temporary(state), self.path)

    def remove(self, owner: ProcessRef | None = None) -> None:
        """Remove the file — only if ``owner`` (when given) is still the supervisor it names."""
        if owner is not None:
            current = self.read()
            if current is not None and current.supervisor != owner:
                return  # a newer stack owns the dir now
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write_temporary(self, state: StackState) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".stack-", suffix=".json", dir=self.dir)
        with os.fdopen(fd, "w") as out:
            json.dump(state.to_json(), out, indent=2)
        return Path(name)
