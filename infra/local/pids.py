"""A process named by pid *and* start time, so a recorded pid never hits a stranger.

The local stack writes pids to a file and acts on them later, from another
process (``scalecube down``). By then the pid may belong to someone else; its
start time tells them apart.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

SAME_START = 1.0  # seconds; start times are read in clock ticks, so compare loosely


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    started: float  # psutil's create_time(), seconds since the epoch

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The process running as ``pid`` now, or None if there is none."""
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            return None

    def _process(self) -> psutil.Process | None:
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.started) > SAME_START:
                return None  # the pid was reused
            if process.status() == psutil.STATUS_ZOMBIE:
                return None  # exited; only its parent has not collected it yet
            return process
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self._process() is not None

    def signal(self, sig: int) -> bool:
        """Send ``sig`` if the process still runs; True if it was sent."""
        process = self._process()
        if process is None:
            return False
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
            return True
        return False

    def kill_tree(self) -> None:
        """SIGKILL the process and every descendant (a cluster master's workers), by pid."""
        process = self._process()
        if process is None:
            return
        with contextlib.suppress(psutil.Error):
            family = [process, *process.children(recursive=True)]
            for member in family:
                with contextlib.suppress(psutil.Error):
                    member.send_signal(signal.SIGKILL)
            psutil.wait_procs(family, timeout=5)

    def kill_group(self, timeout: float = 5.0) -> list[int]:
        """SIGKILL what is left of the process group this process led, once it has exited; returns their pids.

        Its children (a cluster master's workers) are re-parented when it dies, so ``kill_tree``
        no longer finds them; they keep its process group (each component starts a new session).
        Only members started after it are taken, and only while its pid is free: a process now
        holding that pid may lead a stranger's group of the same number.
        """
        if psutil.pid_exists(self.pid):
            return []
        members = []
        for process in psutil.process_iter(["create_time", "status"]):
            try:
                if (
                    os.getpgid(process.pid) == self.pid
                    and process.info["status"] != psutil.STATUS_ZOMBIE
                    and process.info["create_time"] >= self.started - SAME_START
                ):
                    members.append(ProcessRef(process.pid, process.info["create_time"]))
            except (OSError, psutil.Error):
                continue  # gone meanwhile
        for member in members:
            member.signal(signal.SIGKILL)
        # Not psutil.wait_procs: whoever inherits an orphan may never reap it, and a zombie holds no port.
        deadline = time.monotonic() + timeout
        for member in members:
            member.wait_gone(max(0.0, deadline - time.monotonic()))
        return [member.pid for member in members]

    def wait_gone(self, timeout: float, interval: float = 0.05) -> bool:
        """Poll until the process has exited; False if it still runs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True


def log_tail(path: Path | str | None, lines: int = 20) -> str:
    """The last ``lines`` of a log file, for error messages."""
    if path is None:
        return "(no log)"
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"(empty log {path})"
