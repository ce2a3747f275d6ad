"""What ``scalecube status`` knows about the local stack: the state file, checked against the live processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cluster import control
from infra.local.components import BACKEND_READERS, admin_auth, read_admin_password
from infra.local.pids import ProcessRef
from infra.local.state import StateFile


def stack_status(state_dir: Path) -> dict[str, Any] | None:
    """The stack recorded in ``state_dir`` (None if there is none), each process marked alive or not.

    A component with a control socket (a cluster) also carries its master's
    status — the same snapshot ``scalecube status --control`` shows; a balancer,
    the api backends it sees (``backends``: address and up, from its stats page).
    """
    state = StateFile(state_dir).read()
    if state is None:
        return None
    components = []
    for record in state.components:
        recorded = record.get("pid") and record.get("started")
        alive = bool(recorded) and ProcessRef(record["pid"], record["started"]).alive()
        entry: dict[str, Any] = {**record, "alive": alive}
        if record.get("control") and alive:
            try:
                entry["cluster"] = {"control": record["control"], **control.request(record["control"], "status")}
            except (ConnectionError, OSError, ValueError):
                entry["cluster"] = None  # starting, or stopping: its master does not answer right now
        reader = BACKEND_READERS.get(record.get("kind", ""))
        if reader is not None and record.get("stats") and alive:
            try:
                auth = admin_auth(read_admin_password(record["admin_password_file"]))
                entry["backends"] = [{"address": b.address, "up": b.up} for b in reader(record["stats"], auth=auth)]
            except (httpx.HTTPError, OSError, ValueError, KeyError):
                entry["backends"] = None  # starting, or stopping
        components.append(entry)
    return {
        "state_dir": str(state_dir),
        "supervisor": {"pid": state.supervisor.pid, "alive": state.supervisor.alive()},
        "phase": state.phase,
        "started_at": state.started_at,
        "components": components,
    }
