"""Make the master the reaper of its whole subtree, not only when it is PID 1.

A worker (or a library inside it) may start processes that outlive their
parent. Orphans are re-parented to PID 1, or to the nearest ancestor marked as a
"child subreaper" (Linux ``PR_SET_CHILD_SUBREAPER``). Marking the master keeps
orphans of its subtree its own children, so its ``waitpid(-1)`` reaps them in a
container (where it is PID 1 anyway) and on a laptop alike.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("scalecube.cluster")

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0:
            return True
        log.debug("prctl(PR_SET_CHILD_SUBREAPER) failed: errno %d", ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux
        pass
    return False
