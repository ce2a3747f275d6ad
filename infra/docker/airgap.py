"""Images with no registry: a Debian base from debootstrap, Redis and HAProxy on top of it, a wheelhouse.

Where no image registry is reachable, ``FROM python:3.12-slim`` cannot be pulled, but Debian's mirror
and PyPI can be. So (``scalecube images --airgap``):

1. debootstrap a minimal bookworm (python3, redis-server, haproxy) and ``docker import`` it as the base;
2. build the Redis and HAProxy stand-ins from it (``infra/docker/airgap/*.Dockerfile``, no network), the node image
   for ``scalecube nodes`` (Debian's docker.io, the one build that runs apt, over the host's network), and the
   Prometheus one from it plus Debian's ``prometheus`` package, downloaded and unpacked on the host (the base
   stays as it is: only this image carries Prometheus's 60 MB);
3. download every locked wheel for the base's Python into ``infra/docker/wheelhouse/`` on the host;
4. write ``.env`` so that the unchanged ``docker-compose.yml`` uses these images and builds from the base.

Each step is skipped when its result is already there (``--rebuild`` redoes the base).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.docker.engine import DockerError
from infra.paths import REPO

DOCKER_DIR = REPO / "infra" / "docker"
WHEELHOUSE = DOCKER_DIR / "wheelhouse"
LOCKS = (DOCKER_DIR / "service.lock", DOCKER_DIR / "locust.lock")
ENV_FILE = REPO / ".env"

BASE_IMAGE = "scalecube-debian:bookworm"
REDIS_IMAGE = "scalecube-redis:airgap"
HAPROXY_IMAGE = "scalecube-haproxy:airgap"
PROMETHEUS_IMAGE = "scalecube-prometheus:airgap"
NODE_IMAGE = "scalecube-node:airgap"  # a Docker engine in a container, for `scalecube nodes` (infra/docker/nodes.py)
PROMETHEUS_PACKAGE = "prometheus"  # bookworm's 2.42: the server, promtool, web assets
# The web UI's scripts, styles and fonts: Debian links them from these packages (the package's Depends).
PROMETHEUS_WEB_PACKAGES = (
    "fonts-glyphicons-halflings",
    "libjs-bootstrap4",
    "libjs-d3",
    "libjs-eonasdan-bootstrap-datetimepicker",
    "libjs-jquery",
    "libjs-jquery-hotkeys",
    "libjs-moment",
    "libjs-moment-timezone",
    "libjs-mustache",
    "libjs-popper.js",
    "libjs-rickshaw",
)
# Unpacked but not needed in the image: the stack never runs promtool (48 MB); the UI loads one file of
# moment-timezone, not its 212 MB of data; no docs. (usr/share/nodejs stays: bootstrap4's files live there.)
PROMETHEUS_PRUNE = (
    "usr/bin/promtool",
    "usr/share/javascript/moment-timezone/data",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/lintian",
    "usr/share/sass",
)
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "redis-server", "haproxy", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Not needed at run time: left out of the base to keep it small.
PRUNE = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
)

# Bookworm's glibc is 2.36: wheels tagged for any glibc up to it run on the base.
GLIBC_TAGS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)

Step = Callable[[str], None]


def debian_mirror(sources: tuple[Path, ...] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror this host's apt uses (it is reachable: apt works), else deb.debian.org."""
    files: list[Path] = []
    for source in sources:
        files += sorted(source.glob("*")) if source.is_dir() else [source] if source.exists() else []
    for path in files:
        for found in re.finditer(
            r"(?:^deb\s+(?:\[[^]]*\]\s+)?|^URIs:\s*)(\S+/debian)/?\s*$", path.read_text(), re.MULTILINE
        ):
            return found.group(1)
    return DEFAULT_MIRROR


@dataclass
class AirgapBuilder:
    """Runs the steps above with the docker CLI (``import`` and ``build`` stream big tarballs best there)."""

    report: Step
    rebuild: bool = False

    def run(self) -> dict[str, str]:
        self.base_image()
        self.derived_image(REDIS_IMAGE, "redis.Dockerfile")
        self.derived_image(HAPROXY_IMAGE, "haproxy.Dockerfile")
        self.prometheus_image()
        self.node_image()
        self.wheelhouse(self.base_python())
        return self.write_env()

    def base_image(self) -> None:
        if not self.rebuild and image_exists(BASE_IMAGE):
            self.report(f"{BASE_IMAGE}: present")
            return
        debootstrap = shutil.which("debootstrap")
        if debootstrap is None:
            raise DockerError("debootstrap is not installed (as root: apt-get install debootstrap)")
        mirror = debian_mirror()
        self.report(f"{BASE_IMAGE}: debootstrap {SUITE} from {mirror} (about a minute)")
        with tempfile.TemporaryDirectory(prefix="scalecube-rootfs-") as folder:
            rootfs = Path(folder) / "rootfs"
            run([debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), mirror])
            for relative in PRUNE:
                shutil.rmtree(rootfs / relative, ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            try:
                run(
                    [
                        "docker",
                        "import",
                        "--change",
                        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--change",
                        'CMD ["python3"]',
                        "-",
                        BASE_IMAGE,
                    ],
                    stdin=tar.stdout,
                )
            finally:
                tar.wait()

    def derived_image(
        self, tag: str, dockerfile: str, context: Path = DOCKER_DIR / "airgap", network: str = "none"
    ) -> None:
        """``infra/docker/airgap/DOCKERFILE`` built on the base, from ``context``, with no network unless said."""
        self.report(f"{tag}: docker build from {BASE_IMAGE}")
        run(
            [
                "docker",
                "build",
                "--quiet",
                "--network",
                network,
                "--build-arg",
                f"BASE_IMAGE={BASE_IMAGE}",
                "-t",
                tag,
                "-f",
                str(DOCKER_DIR / "airgap" / dockerfile),
                str(context),
            ]
        )

    def prometheus_image(self) -> None:
        """Debian's Prometheus on the base: the packages unpacked on the host are the build context (no network
        in the build, no root for ``apt-get download`` and ``dpkg-deb -x``): the server and its web UI's assets."""
        if not self.rebuild and image_exists(PROMETHEUS_IMAGE):
            self.report(f"{PROMETHEUS_IMAGE}: present")
            return
        self.report(f"{PROMETHEUS_IMAGE}: Debian's {PROMETHEUS_PACKAGE} package on {BASE_IMAGE}")
        with tempfile.TemporaryDirectory(prefix="scalecube-prometheus-") as folder:
            download, context = Path(folder) / "download", Path(folder) / "context"
            download.mkdir()
            run(["apt-get", "download", "--quiet", PROMETHEUS_PACKAGE, *PROMETHEUS_WEB_PACKAGES], cwd=download)
            for package in sorted(download.glob("*.deb")):
                run(["dpkg-deb", "-x", str(package), str(context)])
            for relative in PROMETHEUS_PRUNE:
                path = context / relative
                path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
            self.derived_image(PROMETHEUS_IMAGE, "prometheus.Dockerfile", context)

    def node_image(self) -> None:
        """Debian's docker.io and iptables on the base: the one build that runs apt, over the host's network
        (the same Debian mirror the base came from; docker.io's dependencies are too many to unpack by hand)."""
        if not self.rebuild and image_exists(NODE_IMAGE):
            self.report(f"{NODE_IMAGE}: present")
            return
        self.derived_image(NODE_IMAGE, "node.Dockerfile", network="host")

    def base_python(self) -> str:
        out = run(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                BASE_IMAGE,
                "python3",
                "-c",
                "import platform; print(platform.python_version())",
            ]
        )
        return out.strip()

    def wheelhouse(self, python: str) -> None:
        """Every wheel of both locks, for ``python`` on x86-64 glibc Linux, checked against the locks' hashes."""
        # pip does not widen a given platform to the older glibc tags it is compatible with: list them.
        platforms = [arg for tag in GLIBC_TAGS for arg in ("--platform", tag)]
        self.report(f"wheelhouse: the locked wheels for Python {python} into {WHEELHOUSE.relative_to(REPO)}")
        with tempfile.TemporaryDirectory(prefix="scalecube-locks-") as folder:
            for lock in LOCKS:
                # pip download judges markers by the host's Python, not --python-version: judge them here.
                target = Path(folder) / lock.name
                target.write_text(lock_for_target(lock.read_text(), target_environment(python)))
                run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "download",
                        "--quiet",
                        "--disable-pip-version-check",
                        "--require-hashes",
                        "--only-binary=:all:",
                        "--python-version",
                        python,
                        "--implementation",
                        "cp",
                        *platforms,
                        "-d",
                        str(WHEELHOUSE),
                        "-r",
                        str(target),
                    ]
                )

    def write_env(self) -> dict[str, str]:
        values = {
            "PYTHON_IMAGE": BASE_IMAGE,
            "REDIS_IMAGE": REDIS_IMAGE,
            "HAPROXY_IMAGE": HAPROXY_IMAGE,
            "PROMETHEUS_IMAGE": PROMETHEUS_IMAGE,
        }
        write_env_file(ENV_FILE, values)
        self.report(f"{ENV_FILE.relative_to(REPO)}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return values


def target_environment(python: str) -> dict[str, str]:
    """PEP 508 marker values of the base image: CPython ``python`` on x86-64 Linux."""
    return {
        "python_full_version": python,
        "python_version": ".".join(python.split(".")[:2]),
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "implementation_version": python,
    }


def lock_for_target(lock: str, environment: dict[str, str]) -> str:
    """The lock's requirements that apply to ``environment``, markers removed (hashes kept)."""
    from packaging.markers import Marker

    kept: list[str] = []
    for block in re.split(r"\n(?=\S)", lock):
        first, _, rest = block.partition("\n")
        if first.startswith("#") or not first.strip():
            continue
        requirement, _, marker = first.rstrip(" \\").partition(" ; ")
        if marker and not Marker(marker).evaluate(environment):
            continue
        kept.append(f"{requirement} \\\n{rest}" if rest else requirement)
    return "\n".join(kept) + "\n"


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Set ``values`` in a compose ``.env``, keeping the user's other lines."""
    kept = (
        [line for line in path.read_text().splitlines() if line.split("=", 1)[0].strip() not in values]
        if path.exists()
        else []
    )
    header = "# written by `scalecube images --airgap`: images built here, no registry needed"
    kept = [line for line in kept if line != header]
    path.write_text("\n".join([*kept, header, *(f"{k}={v}" for k, v in values.items())]) + "\n")


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def run(argv: list[str], stdin: object = None, cwd: Path | None = None) -> str:
    """Run a build step; its stderr becomes the error's message when it fails."""
    try:
        done = subprocess.run(argv, stdin=stdin, cwd=cwd, capture_output=True, text=True)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise DockerError(f"{argv[0]} is not installed") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise DockerError(f"{' '.join(argv[:3])} ... failed ({done.returncode}):\n" + "\n".join(tail))
    return done.stdout
