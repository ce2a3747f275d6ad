"""Only the user classes the target can serve are offered: in the web UI's class picker, and by default.

Once options are known, the master (or the single local process) asks the ``--host`` what it routes
(``loadtests.locust.target``). A class whose tasks (those ``--tags`` keep) need a part the host lacks
(SplittingUser with no shard router, ``scalecube up --services api``) is dropped from the classes Locust runs and offers, and the
log says which and why (the web UI shows it under Logs). Classes named on the command line are kept:
asked for by name, such a class reports why it cannot run, as a failure, and its users stop. A host
that does not answer is not judged here. Importing this module registers the listener.
"""

from __future__ import annotations

import logging
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtests.locust.options import part_urls
from loadtests.locust.tag_selection import kept_tasks, selected_tags
from loadtests.locust.target import needs_of, target

log = logging.getLogger("scalecube.locust.offered")


@events.init.add_listener
def _offer_only_what_the_target_serves(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner) or not environment.host:
        return
    here = target(environment.host, part_urls(options))
    if any(part.status is None for part in here.parts.values()):
        log.warning(
            "%s did not answer every probe (%s): every class is offered",
            here.host,
            "; ".join(part.why() for part in here.parts.values()),
        )
        return
    tags, exclude_tags = selected_tags(options)
    refused = {}
    for cls in environment.user_classes:
        needs = needs_of(getattr(task, "locust_tag_set", ()) for task in kept_tasks(cls, tags, exclude_tags))
        if why := here.refusal(cls.__name__, needs):
            refused[cls.__name__] = why
    if not refused:
        return
    if getattr(options, "user_classes", None):
        for why in refused.values():
            log.warning("%s", why)
        return
    environment.user_classes[:] = [cls for cls in environment.user_classes if cls.__name__ not in refused]
    for name, why in refused.items():
        log.warning("not offered: %s", why)
        for table in (environment.available_user_classes, environment.available_user_tasks):
            if table:
                table.pop(name, None)
