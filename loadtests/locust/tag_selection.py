"""``--tags`` across several user classes: run only the classes that keep a task.

Locust filters each class's tasks by tag, and a class left with none fails at its first
step ("No tasks defined"). So ``--tags root`` with every class would crash the session,
auth and splitting users. Here, once options are known, the classes with no matching task
are dropped (and named in the log). Workers filter their own tasks when the master starts them.
Importing this module registers the listener.
"""

from __future__ import annotations

import logging
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger("scalecube.locust.tags")


def kept_tasks(user_class: type, tags: set[str] | None, exclude_tags: set[str] | None) -> list:
    """The tasks of ``user_class`` that Locust will run under these tags (it filters them at test start)."""
    kept = []
    for task in user_class.tasks:
        task_tags = getattr(task, "locust_tag_set", set())
        if tags is not None and not task_tags & tags:
            continue
        if exclude_tags is not None and task_tags & exclude_tags:
            continue
        kept.append(task)
    return kept


def keeps_a_task(user_class: type, tags: set[str] | None, exclude_tags: set[str] | None) -> bool:
    return bool(kept_tasks(user_class, tags, exclude_tags))


def selected_tags(options: Any) -> tuple[set[str] | None, set[str] | None]:
    """``--tags`` and ``--exclude-tags`` as sets (None: not given)."""
    tags = set(options.tags) if getattr(options, "tags", None) else None
    exclude_tags = set(options.exclude_tags) if getattr(options, "exclude_tags", None) else None
    return tags, exclude_tags


@events.init.add_listener
def _drop_classes_without_tasks(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    tags, exclude_tags = selected_tags(options)
    if tags is None and exclude_tags is None:
        return
    kept = [cls for cls in environment.user_classes if keeps_a_task(cls, tags, exclude_tags)]
    dropped = sorted(cls.__name__ for cls in environment.user_classes if cls not in kept)
    if not kept:
        raise SystemExit(f"no user class has a task tagged {sorted(tags or [])} (minus {sorted(exclude_tags or [])})")
    if dropped:
        log.info("no task left after the tag filter, not run: %s", ", ".join(dropped))
        environment.user_classes[:] = kept
        if environment.user_classes_by_name:
            for name in dropped:
                environment.user_classes_by_name.pop(name, None)
