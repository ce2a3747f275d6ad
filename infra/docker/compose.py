"""``docker compose`` for one project: the stack's file, its project name, its environment.

Compose itself (v2, the CLI plugin) does up/down/build; the Docker SDK does the rest (``infra.docker.ops``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.docker.engine import DockerError

PROJECT = "scalecube"  # docker-compose.yml's `name:`
COMPOSE_FILE = "docker-compose.yml"


class Compose:
    def __init__(
        self,
        project_dir: Path,
        *,
        project: str | None = None,
        env: Mapping[str, str] | None = None,
        files: Sequence[Path] = (),
    ) -> None:
        self.project_dir = project_dir
        self.project = project or os.environ.get("COMPOSE_PROJECT_NAME") or PROJECT
        self.env = {**os.environ, **(env or {})}
        self.files = list(files) or [project_dir / COMPOSE_FILE]

    def argv(self, args: Sequence[str], *, log_level: str | None = None) -> list[str]:
        if shutil.which("docker") is None:
            raise DockerError("the docker CLI is not installed")
        files = [arg for path in self.files for arg in ("-f", str(path))]
        docker = ["docker", "--log-level", log_level] if log_level else ["docker"]
        return [*docker, "compose", "--project-directory", str(self.project_dir), "-p", self.project, *files, *args]

    def run(
        self, args: Sequence[str], *, capture: bool = True, timeout: float | None = None, log_level: str | None = None
    ) -> str:
        """Run ``docker compose ARGS``; a failure raises DockerError with compose's own last words.
        ``log_level`` ("error"): compose's own warnings below it are not printed."""
        return self._run(
            self.argv(args, log_level=log_level), f"docker compose {' '.join(args)}", capture=capture, timeout=timeout
        )

    def run_docker(self, args: Sequence[str], *, stdin: str | None = None, timeout: float | None = None) -> str:
        """Run another ``docker`` command (``stack deploy``, ...) in the same environment."""
        if shutil.which("docker") is None:
            raise DockerError("the docker CLI is not installed")
        return self._run(["docker", *args], f"docker {' '.join(args[:2])}", stdin=stdin, timeout=timeout)

    def _run(
        self,
        argv: list[str],
        what: str,
        *,
        capture: bool = True,
        stdin: str | None = None,
        timeout: float | None = None,
    ) -> str:
        done = subprocess.run(
            argv,
            env=self.env,
            text=True,
            timeout=timeout,
            input=stdin,
            cwd=self.project_dir,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )
        if done.returncode != 0:
            # stderr last: a command that lists its progress on stdout (`stack rm`) says why it failed on stderr
            said = "\n".join(((done.stdout or "") + (done.stderr or "")).strip().splitlines()[-15:])
            if "is not a docker command" in said or "unknown command" in said:
                raise DockerError("docker compose (v2) is not installed: see infra/docker/provision-engine.sh")
            raise DockerError(f"{what} failed ({done.returncode})" + (f":\n{said}" if said else ""))
        return done.stdout or ""
