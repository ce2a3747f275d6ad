"""How many CPUs this process may really use: what ``--workers auto`` means.

``os.cpu_count()`` reports the host's cores even inside a container limited to
one, and forking one worker per host core there only adds context switches.
The real budget is the smaller of the affinity mask and the cgroup CPU quota.

The cgroup is read from files under ``root`` (``/`` in production) so tests can
point it at a fake tree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CGROUP_MOUNT = "sys/fs/cgroup"
# Where distributions mount the v1 ``cpu`` controller (first existing wins).
V1_CPU_MOUNTS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")


@dataclass(frozen=True)
class CpuBudget:
    """Why ``chosen`` workers: logged when the cluster starts."""

    affinity: int  # CPUs in this process's affinity mask
    quota: float | None  # cgroup CPU quota in CPUs; None when unlimited or unknown
    chosen: int

    def __str__(self) -> str:
        quota = "unlimited" if self.quota is None else f"{self.quota:g}"
        return f"{self.chosen} CPU(s) (affinity {self.affinity}, cgroup quota {quota})"


def available_cpus(root: str | Path = "/") -> int:
    """The number of CPUs this process may use; at least 1."""
    return cpu_budget(root).chosen


def cpu_budget(root: str | Path = "/") -> CpuBudget:
    affinity = affinity_cpus()
    quota = cgroup_cpu_quota(root)
    chosen = affinity if quota is None else min(affinity, cpus_for_quota(quota))
    return CpuBudget(affinity=affinity, quota=quota, chosen=max(1, chosen))


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity API
        return os.cpu_count() or 1


def cpus_for_quota(quota: float) -> int:
    """Round a fractional quota up: 1.5 CPUs of time keeps 2 workers busy."""
    return max(1, math.ceil(quota))


def cgroup_cpu_quota(root: str | Path = "/") -> float | None:
    """The tightest CPU quota (in CPUs) applying to this process, or None."""
    root = Path(root)
    quotas: list[float] = []
    for hierarchy_id, controllers, path in _own_cgroups(root):
        if hierarchy_id == "0" and controllers == "":
            quotas += _quotas_along(root / CGROUP_MOUNT, path, _read_v2_quota)
        elif "cpu" in controllers.split(","):
            mount = _v1_cpu_mount(root)
            if mount is not None:
                quotas += _quotas_along(mount, path, _read_v1_quota)
    return min(quotas, default=None)


def _own_cgroups(root: Path) -> list[tuple[str, str, str]]:
    """``/proc/self/cgroup`` lines as (hierarchy id, controllers, path)."""
    try:
        text = (root / "proc/self/cgroup").read_text()
    except (OSError, UnicodeDecodeError):
        return []
    entries = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2].startswith("/"):
            entries.append((parts[0], parts[1], parts[2]))
    return entries


def _v1_cpu_mount(root: Path) -> Path | None:
    for name in V1_CPU_MOUNTS:
        mount = root / CGROUP_MOUNT / name
        if mount.is_dir():
            return mount
    return None


def _quotas_along(mount: Path, cgroup_path: str, read_quota: Callable[[Path], float | None]) -> list[float]:
    """Quotas of the process's cgroup and every ancestor up to the mount root.

    A parent's limit binds its children, so all levels count. Without a cgroup
    namespace the path names the host's hierarchy ("/docker/<id>") while the
    container sees only its own cgroup at the mount root: missing levels are
    skipped, and the walk still ends at the mount root, which is the right one.
    """
    quotas = []
    path = PurePosixPath(cgroup_path)
    for level in (path, *path.parents):
        quota = read_quota(mount / level.relative_to("/"))
        if quota is not None:
            quotas.append(quota)
    return quotas


def _read_v2_quota(directory: Path) -> float | None:
    # cpu.max: "<quota_us> <period_us>", or "max <period_us>" when unlimited.
    fields = _read(directory / "cpu.max").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _read_v1_quota(directory: Path) -> float | None:
    # cpu.cfs_quota_us is -1 when unlimited.
    return _ratio(_read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us"))


def _ratio(quota_us: str, period_us: str) -> float | None:
    try:
        quota, period = int(quota_us), int(period_us)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def _read(file: Path) -> str:
    try:
        return file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""
