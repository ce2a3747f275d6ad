"""``--workers auto``: affinity and cgroup quota, read from fake cgroup trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.cpus import CpuBudget, affinity_cpus, available_cpus, cgroup_cpu_quota, cpu_budget, cpus_for_quota

AFFINITY = affinity_cpus()
needs_two_cpus = pytest.mark.skipif(AFFINITY < 2, reason="needs an affinity mask of at least 2 CPUs")


def write(root: Path, relative: str, text: str) -> None:
    file = root / relative
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


def v2_tree(root: Path, own_path: str = "/", **cpu_max: str) -> Path:
    """A unified hierarchy; ``cpu_max`` maps cgroup dirs ("" = mount root) to cpu.max contents."""
    write(root, "proc/self/cgroup", f"0::{own_path}\n")
    (root / "sys/fs/cgroup").mkdir(parents=True, exist_ok=True)
    for directory, text in cpu_max.items():
        write(root, f"sys/fs/cgroup/{directory}/cpu.max".replace("//", "/"), text + "\n")
    return root


def v1_tree(
    root: Path, own_path: str, quota_dir: str, quota: str, period: str = "100000", mount: str = "cpu,cpuacct"
) -> Path:
    write(root, "proc/self/cgroup", f"12:memory:{own_path}\n4:cpu,cpuacct:{own_path}\n0::/\n")
    base = f"sys/fs/cgroup/{mount}/{quota_dir}".rstrip("/")
    write(root, f"{base}/cpu.cfs_quota_us", quota + "\n")
    write(root, f"{base}/cpu.cfs_period_us", period + "\n")
    return root


def test_v2_containerised_limit_is_read_from_the_mount_root(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": "100000 100000"})

    assert cgroup_cpu_quota(tmp_path) == 1.0
    assert available_cpus(tmp_path) == 1


def test_v2_unlimited_means_the_affinity_mask(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": "max 100000"})

    assert cgroup_cpu_quota(tmp_path) is None
    assert cpu_budget(tmp_path) == CpuBudget(affinity=AFFINITY, quota=None, chosen=AFFINITY)


def test_v2_tighter_ancestor_wins_over_own_cgroup(tmp_path: Path) -> None:
    v2_tree(
        tmp_path,
        "/kubepods/pod1/ctr",
        **{
            "kubepods/pod1/ctr": "400000 100000",  # 4 CPUs for the container...
            "kubepods/pod1": "150000 100000",  # ...but the pod only gets 1.5
            "kubepods": "max 100000",
        },
    )

    assert cgroup_cpu_quota(tmp_path) == 1.5


def test_v2_own_cgroup_tighter_than_ancestor(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/app.slice/web", **{"app.slice/web": "50000 100000", "app.slice": "800000 100000"})

    assert cgroup_cpu_quota(tmp_path) == 0.5


def test_v2_host_path_missing_in_container_falls_back_to_mount_root(tmp_path: Path) -> None:
    # No cgroup namespace: /proc/self/cgroup names the host path, the mount shows only our cgroup.
    v2_tree(tmp_path, "/system.slice/docker-abc.scope", **{"": "300000 100000"})

    assert cgroup_cpu_quota(tmp_path) == 3.0


def test_v1_limited(tmp_path: Path) -> None:
    v1_tree(tmp_path, "/", "", quota="200000", period="100000")

    assert cgroup_cpu_quota(tmp_path) == 2.0


def test_v1_unlimited(tmp_path: Path) -> None:
    v1_tree(tmp_path, "/", "", quota="-1")

    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_v1_container_path_absent_under_mount_uses_mount_root(tmp_path: Path) -> None:
    v1_tree(tmp_path, "/docker/0123abcd", "", quota="50000", mount="cpu")

    assert cgroup_cpu_quota(tmp_path) == 0.5
    assert available_cpus(tmp_path) == 1


def test_v1_own_cgroup_directory_is_read_when_present(tmp_path: Path) -> None:
    v1_tree(tmp_path, "/batch/job7", "batch/job7", quota="25000", period="50000")

    assert cgroup_cpu_quota(tmp_path) == 0.5


@pytest.mark.parametrize(("quota", "cpus"), [(1.5, 2), (2.0, 2), (2.01, 3), (0.25, 1), (0.0001, 1)])
def test_fractional_quota_rounds_up_and_never_below_one(quota: float, cpus: int) -> None:
    assert cpus_for_quota(quota) == cpus


@needs_two_cpus
def test_fractional_quota_gives_the_rounded_up_worker_count(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": "150000 100000"})

    assert cpu_budget(tmp_path) == CpuBudget(affinity=AFFINITY, quota=1.5, chosen=2)


def test_quota_below_one_cpu_still_gives_one_worker(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": "10000 100000"})

    assert cpu_budget(tmp_path).quota == 0.1
    assert available_cpus(tmp_path) == 1


def test_affinity_smaller_than_quota_wins(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": f"{(AFFINITY + 3) * 100000} 100000"})

    assert cpu_budget(tmp_path) == CpuBudget(affinity=AFFINITY, quota=AFFINITY + 3, chosen=AFFINITY)


def test_a_process_pinned_to_one_cpu_gets_one_worker(tmp_path: Path) -> None:
    """A real affinity mask (like ``taskset -c 0``), set in a child so this process keeps its own."""
    v2_tree(tmp_path, "/", **{"": "800000 100000"})
    cpu = min(os.sched_getaffinity(0))
    script = (
        "import os, sys; from cluster.cpus import cpu_budget; "
        f"os.sched_setaffinity(0, {{{cpu}}}); print(cpu_budget(sys.argv[1]))"
    )

    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=30)

    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 CPU(s) (affinity 1, cgroup quota 8)"


def test_no_cgroup_files_at_all_means_affinity(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_proc_cgroup_present_but_no_controller_files(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "0::/some/where\n")

    assert cgroup_cpu_quota(tmp_path) is None


@pytest.mark.parametrize("garbage", ["", "banana", "max", "100000", "12 0", "-5 100000", "1.5 1", "\xff\xfe"])
def test_garbage_cpu_max_is_ignored(tmp_path: Path, garbage: str) -> None:
    v2_tree(tmp_path, "/", **{"": garbage})

    assert cgroup_cpu_quota(tmp_path) is None
    assert available_cpus(tmp_path) == AFFINITY


def test_garbage_is_ignored_but_a_valid_ancestor_still_counts(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/a/b", **{"a/b": "lots of cpu", "a": "200000 100000"})

    assert cgroup_cpu_quota(tmp_path) == 2.0


def test_garbage_proc_self_cgroup_is_ignored(tmp_path: Path) -> None:
    write(tmp_path, "proc/self/cgroup", "this is not\na cgroup file\n::\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "100000 100000\n")

    assert cgroup_cpu_quota(tmp_path) is None


def test_v1_garbage_quota_is_ignored(tmp_path: Path) -> None:
    v1_tree(tmp_path, "/", "", quota="unlimited", period="100000")

    assert cgroup_cpu_quota(tmp_path) is None


def test_budget_explains_itself_for_the_startup_log(tmp_path: Path) -> None:
    v2_tree(tmp_path, "/", **{"": "150000 100000"})

    assert str(cpu_budget(tmp_path)) == f"{min(AFFINITY, 2)} CPU(s) (affinity {AFFINITY}, cgroup quota 1.5)"


def test_this_machine_gives_a_positive_count() -> None:
    assert 1 <= available_cpus() <= AFFINITY
