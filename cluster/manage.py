"""PM2's everyday commands for the clusters on this machine: start in the background, find by name or
port, reload, scale, stop, restart, delete — all through each master's control socket.

Nothing here hunts for pids: a cluster is found by asking every control socket in the run dir
(``cluster.status.discover``) what it is, and a master is told what to do over its socket. The only
pids used are the ones masters give in their answers (to wait until a stopped master is gone) and
the one of the ``scalecube serve`` this module just spawned (to see it die before it got ready).

``start`` remembers how it started an app (``<run dir>/apps/NAME.json``: the serve command line,
environment and folder), so ``restart`` and ``start NAME`` can start it again; ``delete`` forgets it
and its logs. Run dir layout::

    cluster-NAME.sock     the control socket of a cluster started here (serve's default: cluster-PORT.sock)
    apps/NAME.json        how NAME was started
    logs/NAME/            master.log, worker-SLOT.log (cluster.logfiles)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from cluster import control, logfiles
from cluster.config import NAME_PATTERN, default_run_dir
from cluster.status import collect, discover

START_TIMEOUT = 90.0  # longer than a worker's startup timeout (cluster.config), on a loaded machine
STOP_TIMEOUT = 90.0  # longer than a worker's drain + kill grace, with the default drain timeout
RELOAD_TIMEOUT = 600.0  # a rolling reload takes one worker start and drain per worker
POLL = 0.1


class ManageError(Exception):
    """A command that cannot do what it was asked: the message says why, for the user."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotFound(ManageError):
    """No running cluster answers to that name or port."""


# ----------------------------------------------------------------------- finding clusters
@dataclass(frozen=True)
class Running:
    """One running cluster as its master described itself (its ``status`` answer)."""

    control: Path
    snapshot: dict[str, Any]

    @property
    def master(self) -> dict[str, Any]:
        return self.snapshot["master"]

    @property
    def name(self) -> str:
        return str(self.master.get("name") or "")

    @property
    def port(self) -> int:
        return int(self.master.get("port") or self.master["address"].rsplit(":", 1)[1])  # older masters: no "port"

    @property
    def pid(self) -> int:
        return int(self.master["pid"])

    def listening(self) -> int:
        return sum(1 for w in self.snapshot["workers"] if w["state"] == "listening")

    def label(self) -> str:
        return f"{self.name} (port {self.port}, master pid {self.pid})"


def running(run_dir: Path | None = None) -> list[Running]:
    """Every cluster whose master answers on a control socket in the run dir."""
    return [Running(Path(s.pop("control")), s) for s in collect(discover(run_dir))]


def find(target: str, run_dir: Path | None = None) -> Running:
    """The one running cluster called ``target``, or listening on port ``target``."""
    clusters = running(run_dir)
    found = [c for c in clusters if c.name == target or (target.isdigit() and c.port == int(target))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFound(f"no running cluster is named {target!r} or listens on port {target}; {_what_runs(clusters)}")
    raise ManageError(
        f"{len(found)} clusters are named {target!r}: " + ", ".join(c.label() for c in found) + "; name one by its port"
    )


def _what_runs(clusters: list[Running]) -> str:
    if not clusters:
        return f"none runs (run dir {default_run_dir()})"
    return "running: " + ", ".join(c.label() for c in clusters)


def refresh(cluster: Running) -> Running:
    return Running(cluster.control, control.request(cluster.control, "status"))


# ------------------------------------------------------------------------- remembered apps
@dataclass(frozen=True)
class AppSpec:
    """How to start one app in the background: ``scalecube serve TARGET OPTIONS...`` in ``cwd``."""

    name: str
    target: str  # MODULE:APP
    options: list[str] = field(default_factory=list)  # serve's options, as on its command line
    env: dict[str, str] = field(default_factory=dict)  # on top of the environment of whoever starts it
    cwd: str = field(default_factory=os.getcwd)  # the app is imported from here

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ManageError(
                f"bad name {self.name!r}: it must start with a letter and hold only letters, digits, '_', '.', '-'",
                exit_code=2,
            )

    def serve_argv(self, run_dir: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scalecube",
            "serve",
            self.target,
            *self.options,
            "--name",
            self.name,
            "--control",
            str(control_path(run_dir, self.name)),
            "--log-dir",
            str(log_dir(run_dir, self.name)),
        ]


def control_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"cluster-{name}.sock"


def log_dir(run_dir: Path, name: str) -> Path:
    return run_dir / "logs" / name


def _spec_path(run_dir: Path, name: str) -> Path:
    return run_dir / "apps" / f"{name}.json"


def save_spec(run_dir: Path, spec: AppSpec) -> None:
    path = _spec_path(run_dir, spec.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(spec), indent=1))
    os.replace(temporary, path)


def stopped(run_dir: Path | None = None) -> list[AppSpec]:
    """Apps started here before that do not run now (PM2's "stopped"): `scalecube start NAME` starts one."""
    folder = run_dir or default_run_dir()
    names = {cluster.name for cluster in running(folder)}
    specs = (load_spec(folder, path.stem) for path in sorted((folder / "apps").glob("*.json")))
    return [spec for spec in specs if spec is not None and spec.name not in names]


def load_spec(run_dir: Path, name: str) -> AppSpec | None:
    try:
        return AppSpec(**json.loads(_spec_path(run_dir, name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


# ------------------------------------------------------------------------------- commands
def start(spec: AppSpec, run_dir: Path, timeout: float = START_TIMEOUT) -> Running:
    """``scalecube serve`` in the background (its own session); returns once every worker listens.

    If it exits or is not ready in time, it is stopped and the error carries its log's last lines.
    """
    for cluster in running(run_dir):
        if cluster.name == spec.name:
            raise ManageError(
                f"{cluster.label()} already runs: `scalecube reload {spec.name}` or "
                f"`scalecube restart {spec.name}`, or give another --name"
            )
    folder = log_dir(run_dir, spec.name)
    folder.mkdir(parents=True, exist_ok=True)
    save_spec(run_dir, spec)
    master_log = logfiles.master_log(folder)
    with open(master_log, "ab") as output:
        process = subprocess.Popen(
            spec.serve_argv(run_dir),
            cwd=spec.cwd,
            env={**os.environ, **spec.env, "SCALECUBE_RUN_DIR": str(run_dir)},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        return _wait_started(spec, process, control_path(run_dir, spec.name), master_log, timeout)
    except BaseException:
        if process.poll() is None:  # our own child, not ready: stopped, its workers with it
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STOP_TIMEOUT)
        raise


def _wait_started(
    spec: AppSpec, process: subprocess.Popen[bytes], path: Path, master_log: Path, timeout: float
) -> Running:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ManageError(
                f"{spec.name} exited with code {code} before its workers listened\n{_tail(master_log)}",
                exit_code=code if code > 0 else 1,
            )
        with contextlib.suppress(ConnectionError, OSError, ValueError):
            cluster = Running(path, control.request(path, "status"))
            if cluster.pid == process.pid and cluster.listening() >= cluster.master["target_workers"]:
                return cluster
        if time.monotonic() >= deadline:
            raise ManageError(
                f"{spec.name}: its workers did not all listen within {timeout:g}s; stopped it\n{_tail(master_log)}"
            )
        time.sleep(POLL)


def _tail(path: Path, lines: int = 20) -> str:
    return f"--- last lines of {path} ---\n" + "\n".join(logfiles.last_lines(path, lines))


def stop(cluster: Running, timeout: float = STOP_TIMEOUT) -> None:
    """Graceful: the master stops taking connections, every worker drains, the master exits. Waits for that."""
    try:
        process = psutil.Process(cluster.pid)
        started = process.create_time()
    except psutil.Error:
        return  # gone already
    try:
        control.request(cluster.control, "stop")
    except (ConnectionError, OSError, ValueError):
        pass  # stopping already (its socket closes as it exits): wait for it all the same
    deadline = time.monotonic() + timeout
    while _alive(process, started):
        if time.monotonic() >= deadline:
            raise ManageError(
                f"{cluster.label()} is still stopping after {timeout:g}s (workers draining); "
                "`scalecube status` shows them"
            )
        time.sleep(POLL)


def _alive(process: psutil.Process, started: float) -> bool:
    try:
        return process.create_time() == started and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reload(cluster: Running, timeout: float = RELOAD_TIMEOUT) -> list[dict[str, int]]:
    """A rolling reload, waited for; returns each replacement (slot, old id and pid, new id and pid)."""
    try:
        answer = control.request(cluster.control, "reload", timeout=timeout, wait=True)
    except TimeoutError:
        raise ManageError(
            f"{cluster.label()}: the reload still runs after {timeout:g}s; `scalecube status` shows its progress"
        ) from None
    except (ConnectionError, OSError, ValueError) as exc:
        raise ManageError(f"{cluster.label()}: the reload got no answer: {exc}") from None
    if not answer.get("ok"):
        raise ReloadFailed(
            f"{cluster.label()}: the reload stopped: {answer.get('error')}; the workers not yet replaced keep serving",
            answer.get("replaced", []),
        )
    return list(answer["replaced"])


class ReloadFailed(ManageError):
    def __init__(self, message: str, replaced: list[dict[str, int]]) -> None:
        super().__init__(message)
        self.replaced = replaced


def scale(cluster: Running, count: str, timeout: float = START_TIMEOUT) -> Running:
    """To ``N`` workers, or ``+N`` / ``-N``; returns once exactly that many listen and no other runs."""
    try:
        number = int(count)
    except ValueError:
        raise ManageError(f"expected N, +N or -N workers, got {count!r}", exit_code=2) from None
    args = {"delta": number} if count.startswith(("+", "-")) else {"to": number}
    answer = control.request(cluster.control, "scale", **args)
    if not answer.get("ok"):
        raise ManageError(f"{cluster.label()}: {answer.get('error')}", exit_code=2)
    target = int(answer["workers"])
    deadline = time.monotonic() + timeout
    while True:
        now = refresh(cluster)
        if now.listening() == len(now.snapshot["workers"]) == target:
            return now
        if time.monotonic() >= deadline:
            raise ManageError(
                f"{cluster.label()}: not at {target} listening workers after {timeout:g}s "
                f"({now.listening()} listen, {len(now.snapshot['workers'])} run)"
            )
        time.sleep(POLL)


def remembered(name: str, run_dir: Path) -> AppSpec:
    spec = load_spec(run_dir, name)
    if spec is None:
        raise ManageError(
            f"{name!r} was not started with `scalecube start` here (nothing remembered in "
            f"{run_dir / 'apps'}); {_what_runs(running(run_dir))}"
        )
    return spec


def restart(target: str, run_dir: Path, timeout: float = START_TIMEOUT) -> Running:
    """PM2's restart, a hard one: stop the whole cluster (gracefully), start it again as it was started.

    Not zero-downtime (the port is closed in between): that is ``reload``. The master
    restarts too, so changed master code takes effect; it keeps the worker count it had
    (a ``scale`` since the start is not undone), as PM2 does.
    """
    try:
        cluster: Running | None = find(target, run_dir)
    except NotFound:
        cluster = None  # not running: start it, if it was started here before
    spec = remembered(cluster.name if cluster else target, run_dir)
    if cluster is not None:
        workers = str(cluster.master["target_workers"])  # the last --workers on a command line wins
        spec = replace(spec, options=[*_without(spec.options, "--workers"), "--workers", workers])
        stop(cluster, STOP_TIMEOUT)
    return start(spec, run_dir, timeout)


def _without(options: list[str], flag: str) -> list[str]:
    """``options`` less ``flag`` and its value (``--flag V`` or ``--flag=V``)."""
    kept, skip = [], False
    for item in options:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(flag + "="):
            kept.append(item)
    return kept


def delete(target: str, run_dir: Path) -> list[str]:
    """Stop it if it runs, then forget how it was started and remove its logs; says what it did."""
    try:
        cluster: Running | None = find(target, run_dir)
    except NotFound:
        cluster = None
    name = cluster.name if cluster else target
    spec = load_spec(run_dir, name)
    if cluster is None and spec is None:
        raise ManageError(f"nothing called {target!r} runs or is remembered; {_what_runs(running(run_dir))}")
    done = []
    if cluster is not None:
        stop(cluster)
        done.append(f"stopped {cluster.label()}")
    if spec is not None:
        _spec_path(run_dir, name).unlink(missing_ok=True)
        shutil.rmtree(log_dir(run_dir, name), ignore_errors=True)
        done.append(f"forgot {name} and removed its logs")
    return done


def logs_of(target: str, run_dir: Path) -> Path:
    """The log dir of a running cluster (its master says where), or of one started here before."""
    try:
        cluster = find(target, run_dir)
    except NotFound:
        if load_spec(run_dir, target) is None:
            raise
        return log_dir(run_dir, target)
    if not cluster.master.get("logs"):
        raise ManageError(f"{cluster.label()} runs in the foreground without --log-dir: its output is in its terminal")
    return Path(cluster.master["logs"])
