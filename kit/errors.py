"""Errors shared by every scalecube component."""


class DependencyUnavailable(Exception):
    """A backing service (redis, auth, a shard, ...) cannot be reached.

    Services turn it into a 503 whose JSON names ``dependency``; callers never
    see the underlying client exception or a stack trace.
    """

    def __init__(self, dependency: str, detail: str = "") -> None:
        self.dependency = dependency
        self.detail = detail
        super().__init__(f"{dependency} unavailable" + (f": {detail}" if detail else ""))
