"""``scalecube.toml``: the apps ``scalecube start --config`` starts — PM2's ecosystem file.

    [apps.api]
    app = "services.api.app:app"          # required: what `scalecube serve` runs
    workers = 2                           # any option of `scalecube serve`, by its name:
    port = 8000                           #   --drain-timeout is drain_timeout, and so on
    env = { SESSION_BACKEND = "memory" }  # added to the environment of the master and its workers
    cwd = "."                             # where the app is imported from (default: this file's folder)

An option left out takes serve's default: defaults are defined once, on the
``serve`` command. Every option is checked by serve's own parser before
anything starts, and an error names the file, the app and the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer

from cluster.manage import AppSpec, ManageError

OWN_KEYS = ("app", "env", "cwd")
MANAGED = ("name", "control", "log_dir")  # `scalecube start` sets these itself: the table's name, the run dir


def load_apps(path: Path, serve: Any) -> list[AppSpec]:
    """Every ``[apps.NAME]`` of ``path``, checked against ``serve``'s options (the command as typer built it)."""
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ManageError(f"cannot read {path}: {exc.strerror or exc}", exit_code=2) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManageError(f"{path}: not valid TOML: {exc}", exit_code=2) from None
    apps = document.get("apps")
    if not isinstance(apps, dict) or not apps:
        raise ManageError(f"{path}: no [apps.NAME] table (see scalecube.toml in the project)", exit_code=2)
    unknown = sorted(set(document) - {"apps"})
    if unknown:
        raise ManageError(f"{path}: unknown top-level key {unknown[0]!r}; apps go in [apps.NAME]", exit_code=2)
    return [_app(path, name, table, serve) for name, table in apps.items()]


def _app(path: Path, name: str, table: Any, serve: Any) -> AppSpec:
    where = f"{path}: [apps.{name}]"
    if not isinstance(table, dict):
        raise ManageError(f"{where} must be a table", exit_code=2)
    target = table.get("app")
    if not isinstance(target, str):
        raise ManageError(f'{where} app: required, a string like "services.api.app:app"', exit_code=2)
    options = {p.name: p for p in serve.params if p.param_type_name == "option" and p.name not in MANAGED}
    argv: list[str] = []
    for key, value in table.items():
        if key in OWN_KEYS:
            continue
        option = options.get(key)
        if option is None:
            known = ", ".join([*OWN_KEYS, *sorted(str(k) for k in options)])
            raise ManageError(f"{where} {key}: unknown option (known: {known})", exit_code=2)
        argv += _as_argv(where, key, option, value)
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in env.values()
    ):
        raise ManageError(f'{where} env: a table of strings, e.g. env = {{ LOG_LEVEL = "debug" }}', exit_code=2)
    cwd = table.get("cwd", ".")
    if not isinstance(cwd, str):
        raise ManageError(f"{where} cwd: a folder, relative to the file's", exit_code=2)
    folder = (path.parent / cwd).resolve()
    if not folder.is_dir():
        raise ManageError(f"{where} cwd: {folder} is not a folder", exit_code=2)
    check_options(serve, target, argv, where)
    return AppSpec(name=name, target=target, options=argv, env={k: str(v) for k, v in env.items()}, cwd=str(folder))


def _as_argv(where: str, key: str, option: Any, value: Any) -> list[str]:
    flag = option.opts[0]
    if option.is_flag:
        if not isinstance(value, bool):
            raise ManageError(f"{where} {key}: true or false", exit_code=2)
        return [flag] if value else list(option.secondary_opts[:1])
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ManageError(f"{where} {key}: expected a number or a string, got {value!r}", exit_code=2)
    return [flag, str(value)]


def check_options(serve: Any, target: str, options: list[str], where: str) -> None:
    """Parse ``serve TARGET OPTIONS`` the way serve will, without running it; errors name the option."""
    if ":" not in target:
        raise ManageError(f"{where} app: must look like MODULE:APP, got {target!r}", exit_code=2)
    try:
        serve.make_context("serve", [target, *options])
    except typer.TyperException as exc:  # typer's (vendored) click's usage errors
        param = getattr(exc, "param", None)
        key = f"{param.name}:" if param is not None and param.name else ""
        raise ManageError(" ".join(part for part in (where, key, exc.format_message()) if part), exit_code=2) from None
