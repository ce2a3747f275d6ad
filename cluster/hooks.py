"""Finding the code an app runs in the master, without importing the app there.

Why: the master is PID 1 of a container and must stay small and sure. Importing the
app to look for a hook (as the first versions did) ran the app's whole import in it:
settings, Redis clients, FastAPI, and a logging setup that took over the master's.
So the hook lives in a module of its own, found without touching the app:

1. ``--master-hook MODULE:ATTR`` (``SCALECUBE_MASTER_HOOK``), when given;
2. else ``on_master`` in the app package's ``master`` module, if that module exists
   (``services.api.app:app`` -> ``services.api.master:on_master``);
3. else none.

The app module itself is only *found* (``importlib.util.find_spec``), so a typo in its
name still fails fast, before any worker is started; the workers import it.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

HOOK_MODULE = "master"  # the sibling module of the app that holds its master code
HOOK_ATTRIBUTE = "on_master"

MasterHook = Callable[[Any], None]


class HookError(Exception):
    """The app cannot be found, or the master hook asked for cannot be loaded."""


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing, or broken
        return False


def check_app(app: str) -> None:
    """``HookError`` unless the app's module exists (without importing it)."""
    module = app.partition(":")[0]
    if not _find(module):
        raise HookError(f"no module named {module!r}")


def sibling_hook(app: str) -> str | None:
    """``<package of the app's module>.master:on_master`` (None for a top-level module)."""
    package, dot, name = app.partition(":")[0].rpartition(".")
    if not dot or name == HOOK_MODULE:
        return None
    return f"{package}.{HOOK_MODULE}:{HOOK_ATTRIBUTE}"


def load_master_hook(app: str, explicit: str = "") -> MasterHook | None:
    """The hook to run in the master for ``app``, or None; ``HookError`` if it cannot be loaded."""
    check_app(app)
    spec = explicit or sibling_hook(app)
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    if not explicit and not _find(module_name):
        return None  # no master module next to the app: nothing to run
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HookError(f"master hook {spec}: {type(exc).__name__}: {exc}") from exc
    hook = getattr(module, attribute or HOOK_ATTRIBUTE, None)
    if not callable(hook):
        raise HookError(f"master hook {spec}: {module_name} has no callable {attribute or HOOK_ATTRIBUTE!r}")
    return hook
