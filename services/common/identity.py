"""Which process is serving: host, pid and the cluster's worker id and slot.

The cluster runtime exports ``SCALECUBE_WORKER_ID`` (monotonic, like Node's
``worker.id``) and ``SCALECUBE_WORKER_SLOT`` (0..N-1, reused by a replacement,
like PM2's ``NODE_APP_INSTANCE``) to each worker. Outside a cluster both are 0.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

WORKER_ID_ENV = "SCALECUBE_WORKER_ID"
WORKER_SLOT_ENV = "SCALECUBE_WORKER_SLOT"


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    worker_id: int
    slot: int

    @property
    def served_by(self) -> str:
        """The ``X-Served-By`` value: enough to tell replicas and workers apart."""
        return f"{self.host}/{self.pid}"

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ProcessIdentity:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            worker_id=_env_int(environ, WORKER_ID_ENV),
            slot=_env_int(environ, WORKER_SLOT_ENV),
        )


@functools.cache
def current_identity() -> ProcessIdentity:
    """This process's identity, read on first use in the process that serves."""
    return ProcessIdentity.from_environment()


# A forked child is another process: let it read its own pid instead of the parent's.
os.register_at_fork(after_in_child=current_identity.cache_clear)


def _env_int(environ: Mapping[str, str], name: str) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value
