"""One line per event, tagged with the worker and pid, uvicorn's loggers included.

With N workers writing to one terminal, the tag is what tells them apart.
"""

from __future__ import annotations

import logging
import sys

from services.common.identity import current_identity

HANDLER_NAME = "scalecube"
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(level: str = "info", *, access_log: bool = False) -> None:
    """Send every logger, uvicorn's too, to one stderr handler. Safe to call again.

    It takes over the console: a plain stderr/stdout handler already on the
    root (a runner's ``basicConfig``) is replaced, or each line would print twice.
    uvicorn logger levels are left to whoever runs uvicorn.

    uvicorn writes access lines only if ``uvicorn.access`` has a handler, so
    leaving it without one (the default) also skips formatting them.
    """
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")

    # Worker and slot are fixed per process; %(process)d is read per record, so it is never stale.
    identity = current_identity()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)-7s [worker={identity.worker_id} slot={identity.slot} pid=%(process)d] "
            "%(name)s: %(message)s"
        )
    )

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == HANDLER_NAME or _is_plain_console_handler(existing):
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)

    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()  # uvicorn's default config adds its own, differently formatted
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").propagate = access_log


def _is_plain_console_handler(handler: logging.Handler) -> bool:
    # Exactly StreamHandler: subclasses (file handlers, test capture) are someone else's.
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.stdout)
