"""What can go wrong starting or stopping the local stack, as messages for users (no tracebacks)."""

from __future__ import annotations


class StackError(Exception):
    """An expected failure: the CLI prints the message and exits with ``exit_code``."""

    exit_code = 1


class AlreadyRunning(StackError):
    def __init__(self, pid: int, state_dir: object) -> None:
        self.pid = pid
        super().__init__(
            f"a stack is already running (pid {pid}) in {state_dir}; scalecube down first (or use another --state-dir)"
        )


class PortInUse(StackError):
    exit_code = 2  # like `scalecube serve` on a taken port, and like a usage error: fix the command line

    def __init__(self, component: str, host: str, port: int, option: str) -> None:
        super().__init__(
            f"port {port} on {host} (for {component}) is already in use: stop what listens there "
            f"or pick another with {option}"
        )


class StartFailed(StackError):
    """A component did not come up; everything started before it has been stopped."""

    def __init__(self, component: str, reason: str, log_tail: str = "", log_path: object = None) -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component} failed to start: {reason}"
        if log_tail:
            where = f" ({log_path})" if log_path else ""
            message += f"\n--- last lines of its log{where} ---\n{log_tail}"
        super().__init__(message)


class StartAborted(StackError):
    """Asked to stop (Ctrl-C, SIGTERM, ``scalecube down``) while still starting."""

    exit_code = 0

    def __init__(self) -> None:
        super().__init__("stopped before the stack was ready")
