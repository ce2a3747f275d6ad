"""The console's actions: what the page may ask (validated: bad input is a 422 naming the field), the
interface a backend implements, and the runner that logs each one and its measured effect.

Every action returns at once (202, its id) and runs in a thread: its effect ("5 api containers up after
7.3 s") is measured by the backend watching the stack, and lands in the timeline when it comes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from services.console.timeline import Timeline

log = logging.getLogger("scalecube.console")

MAX_CONTAINERS = 8  # a 2-core host: more api containers measure nothing but contention
MAX_REDIS_STOP_SECONDS = 120
MAX_LOCUST_USERS = 500

ScalableService = Literal["api", "auth", "router", "shard-a", "shard-b", "locust-worker"]
ClusterService = Literal["api", "auth", "router", "shard-a", "shard-b"]
RedisService = Literal["redis", "redis-replica", "auth-redis", "directory-redis", "shard-a-redis", "shard-b-redis"]
ContainerName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$", description="a container's name")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scale(Strict):
    service: ScalableService = "api"
    count: int = Field(ge=1, le=MAX_CONTAINERS)


class KillContainer(Strict):
    container: ContainerName


class KillWorker(Strict):
    container: ContainerName
    worker: int | None = Field(default=None, ge=0, le=64, description="the worker's slot; unset: any one")


class RollingRestart(Strict):
    service: ClusterService = "api"


class StopRedis(Strict):
    service: RedisService = "redis"
    seconds: float = Field(ge=1, le=MAX_REDIS_STOP_SECONDS)


class StartSwarm(Strict):
    user_class: str = Field(default="CloningUser", pattern=r"^[A-Z][A-Za-z0-9_]{0,63}$")
    users: int = Field(ge=1, le=MAX_LOCUST_USERS)
    spawn_rate: float = Field(default=10, gt=0, le=100)


class StopSwarm(Strict):
    pass


class ActionFailed(Exception):
    """The action could not be done, or its effect did not come in time: the timeline's line says which."""


# What a backend does: each call performs the action, waits for its effect, and returns that effect in one
# sentence ("5 api containers running and healthy after 7.3 s"); it raises ActionFailed (or any error) if not.
Say = Callable[[str], None]


class Backend(Protocol):
    """The stack the console shows and acts on: compose through the Docker SDK (``DockerBackend``), or the
    local stack's processes through their state and signals (``LocalBackend``)."""

    def topology(self) -> dict[str, object]: ...

    def scale(self, action: Scale, say: Say) -> str: ...

    def kill_container(self, action: KillContainer, say: Say) -> str: ...

    def kill_worker(self, action: KillWorker, say: Say) -> str: ...

    def rolling_restart(self, action: RollingRestart, say: Say) -> str: ...

    def stop_redis(self, action: StopRedis, say: Say) -> str: ...


def describe(action: Strict) -> str:
    match action:
        case Scale(service=service, count=count):
            return f"scale {service} to {count}"
        case KillContainer(container=name):
            return f"kill container {name}"
        case KillWorker(container=name, worker=worker):
            return f"kill worker {'any' if worker is None else worker} of {name}"
        case RollingRestart(service=service):
            return f"rolling restart of {service}"
        case StopRedis(service=service, seconds=seconds):
            return f"stop {service} for {seconds:g} s"
        case StartSwarm(user_class=user_class, users=users, spawn_rate=rate):
            return f"start a Locust swarm: {users} {user_class} at {rate:g}/s"
        case StopSwarm():
            return "stop the Locust swarm"
    return type(action).__name__


class Runner:
    """Starts actions in threads, one at a time per kind of target, and logs each in the timeline."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, action: Strict, perform: Callable[[Say], str]) -> str:
        action_id = f"{type(action).__name__.lower()}-{next(self._ids)}"
        self.timeline.add("action", action_id, describe(action))

        def say(text: str) -> None:  # progress from the backend's thread: deque appends are atomic
            self.timeline.add("info", action_id, text)

        async def run() -> None:
            try:
                effect = await asyncio.to_thread(perform, say)
                self.timeline.add("effect", action_id, effect)
            except Exception as exc:  # any failure is the timeline's line, never a lost task
                log.warning("action %s failed: %s", action_id, exc, exc_info=not isinstance(exc, ActionFailed))
                self.timeline.add("failed", action_id, str(exc) or type(exc).__name__)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return action_id
