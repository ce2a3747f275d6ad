"""Which process is serving: read from the environment the cluster sets, pid never stale."""

from __future__ import annotations

import os
import socket

import pytest

from services.common.identity import ProcessIdentity, current_identity


def test_outside_a_cluster_worker_id_and_slot_are_zero() -> None:
    identity = ProcessIdentity.from_environment({})

    assert identity == ProcessIdentity(host=socket.gethostname(), pid=os.getpid(), worker_id=0, slot=0)
    assert identity.served_by == f"{socket.gethostname()}/{os.getpid()}"


def test_cluster_variables_are_read() -> None:
    identity = ProcessIdentity.from_environment({"SCALECUBE_WORKER_ID": "7", "SCALECUBE_WORKER_SLOT": " 2 "})

    assert (identity.worker_id, identity.slot) == (7, 2)


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("SCALECUBE_WORKER_ID", "one", "SCALECUBE_WORKER_ID must be a whole number, got 'one'"),
        ("SCALECUBE_WORKER_SLOT", "1.5", "SCALECUBE_WORKER_SLOT must be a whole number, got '1.5'"),
        ("SCALECUBE_WORKER_SLOT", "-1", "SCALECUBE_WORKER_SLOT must not be negative, got -1"),
    ],
)
def test_malformed_variables_are_a_clear_error(name: str, value: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        ProcessIdentity.from_environment({name: value})


def test_current_identity_is_this_process() -> None:
    assert current_identity().pid == os.getpid()
    assert current_identity() is current_identity()  # read once


def test_a_forked_child_reports_its_own_pid() -> None:
    current_identity()  # cached in the parent before the fork
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, str(current_identity().pid).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        reported = int(pipe.read())
    os.waitpid(child, 0)

    assert reported == child != os.getpid()
