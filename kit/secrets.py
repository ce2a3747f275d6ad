"""Secrets: never a known one, never a short one, read from ``NAME`` or ``NAME_FILE``, made when missing.

Every secret the stack uses is named in ``SECRETS``. A value anyone can read in this repository (an old
in-code default, a compose default, a CHANGE-ME placeholder) forges sessions or sticky cookies as well as
the real one would, so it is refused, as is one shorter than ``MIN_SECRET_LENGTH``; the message names the
variable, never the value. Where nobody set one, a random one is made (``generate``) and shared by whoever
must agree on it: the cluster master gives its workers one (``scalecube serve``), the local stack keeps
them in its state dir, compose in a volume written once by its ``secrets`` service (``write_missing``),
Kubernetes in a Secret made from ``infra/k8s/secrets.env`` (``write_env_file``).

Plain Python, no pydantic: the balancers, the compose one-shot and the CLI use it as the settings do.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path

MIN_SECRET_LENGTH = 16
FILE_SUFFIX = "_FILE"  # NAME_FILE: a path whose content is NAME's value (a mounted secret)

# Each secret, and who uses it.
SECRETS = {
    "SESSION_SECRET": "signs the api's session cookies (every api replica must share it)",
    "LB_COOKIE_KEY": "HAProxy's sticky-cookie key (LB_STICKY=1): every balancer sharing it pins alike",
    "LB_STICKY_SECRET": "signs the Python balancer's sticky cookie",
    "REDIS_PASSWORD": "every Redis server's requirepass, and what its clients send",
    "LB_ADMIN_PASSWORD": "the balancers' admin/stats pages (user admin)",
}

# Values published in this repository, now or before: each is as good as no secret.
KNOWN_VALUES = frozenset(
    {
        "scalecube-insecure-development-session-secret",  # the api's old in-code default
        "compose-dev-secret-change-me-0123456789abcdef",  # docker-compose.yml's old SESSION_SECRET default
        "scalecube-dev-cookie-key",  # haproxy.cfg's old presetenv LB_COOKIE_KEY
        "compose-dev-cookie-key",  # docker-compose.yml's old LB_COOKIE_KEY default
        "CHANGE-ME-placeholder-session-secret",  # infra/k8s/secrets.env's old placeholders
        "CHANGE-ME-placeholder-cookie-key",
    }
)
# Whole families of placeholders: any value starting so (any case) is one.
KNOWN_PREFIXES = ("change-me", "changeme", "compose-dev-", "scalecube-dev-", "scalecube-insecure-")


class SecretError(ValueError):
    """A secret that must not be used, or cannot be read; the message names the variable, not the value."""


def problem(value: str) -> str | None:
    """Why ``value`` cannot be a secret, or None if it can."""
    if value in KNOWN_VALUES or value.lower().startswith(KNOWN_PREFIXES):
        return "is a known placeholder published with scalecube: anyone can forge with it; set a random one"
    if len(value) < MIN_SECRET_LENGTH:
        return f"must be at least {MIN_SECRET_LENGTH} characters"
    return None


def check(name: str, value: str) -> str:
    """``value``, or ``SecretError`` naming ``name`` when it cannot be a secret."""
    reason = problem(value)
    if reason:
        raise SecretError(f"{name}: {reason}")
    return value


def read_file(name: str, path: str | Path) -> str:
    """A ``NAME_FILE``'s content, without the trailing newline an editor or ``echo`` leaves."""
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise SecretError(f"{name}{FILE_SUFFIX}: cannot read {path}: {exc.strerror or exc}") from None


def lookup(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``NAME`` if set and not empty (a value set in the environment wins), else ``NAME_FILE``'s content,
    else None. Unchecked: the caller decides whether it is required; ``from_environment`` checks."""
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    if value:
        return value
    path = environ.get(name + FILE_SUFFIX)
    return read_file(name, path) if path else None


def from_environment(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """``lookup``, checked: None when neither is set, ``SecretError`` for a known or short value."""
    value = lookup(name, environ)
    return None if value is None else check(name, value)


def generate() -> str:
    """A new random secret: 32 bytes, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def provide(name: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Unless ``NAME`` or ``NAME_FILE`` is set, set ``NAME`` to a new random value in ``environ`` (default:
    this process's, which its children inherit). True if it made one."""
    environ = os.environ if environ is None else environ
    if environ.get(name) or environ.get(name + FILE_SUFFIX):
        return False
    environ[name] = generate()
    return True


def write_missing(
    directory: Path, names: Iterable[str] = SECRETS, environ: Mapping[str, str] | None = None, mode: int = 0o600
) -> dict[str, Path]:
    """One file per secret in ``directory`` (``directory/NAME``): the environment's value if set (NAME or
    NAME_FILE, checked: it wins, and replaces the file's), else the file's if it is already there and valid,
    else a new random one. Returns name -> path. Written whole (temporary file, then rename) so a reader never
    sees half."""
    environ = os.environ if environ is None else environ
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        path = directory / name
        given = lookup(name, environ)
        if given:
            value = check(name, given)
        elif path.is_file() and problem(current := read_file(name, path)) is None:
            value = current
        else:
            value = generate()
        if not path.is_file() or read_file(name, path) != value or (path.stat().st_mode & 0o777) != mode:
            _write(path, value + "\n", mode)
        paths[name] = path
    return paths


def write_env_file(
    path: Path, names: Iterable[str] = SECRETS, environ: Mapping[str, str] | None = None, header: str = ""
) -> dict[str, str]:
    """A ``NAME=value`` file (kustomize's secretGenerator ``envs``), mode 0600: the environment's values
    where set, else the file's own valid ones, else new random ones. Returns the values."""
    environ = os.environ if environ is None else environ
    current = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.lstrip().startswith("#"):
                current[key.strip()] = value.strip()
    values = {}
    for name in names:
        given = lookup(name, environ)
        if given:
            values[name] = check(name, given)
        elif current.get(name) and problem(current[name]) is None:
            values[name] = current[name]
        else:
            values[name] = generate()
    _write(path, header + "".join(f"{name}={value}\n" for name, value in values.items()), 0o600)
    return values


def _write(path: Path, text: str, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.chmod(temporary, mode)  # whatever the umask
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
