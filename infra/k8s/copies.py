"""The repository files kustomize needs, copied into ``infra/k8s/files/`` (it reads nothing outside its folder).

python -m infra.k8s.copies            # refresh the copies
python -m infra.k8s.copies --check    # exit 1, naming them, if a copy differs from its original
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.paths import REPO

K8S_DIR = REPO / "infra" / "k8s"


@dataclass(frozen=True)
class Copy:
    original: str  # relative to the project root
    copy: str  # relative to infra/k8s

    def drifted(self, project_root: Path, k8s_dir: Path) -> bool:
        copy = k8s_dir / self.copy
        return not copy.is_file() or copy.read_bytes() != (project_root / self.original).read_bytes()

    def refresh(self, project_root: Path, k8s_dir: Path) -> None:
        (k8s_dir / self.copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_root / self.original, k8s_dir / self.copy)


COPIES = (
    Copy("lb/haproxy/haproxy.cfg", "files/haproxy.cfg"),
    Copy("lb/haproxy/hop_by_hop.lua", "files/hop_by_hop.lua"),
    Copy("services/router/shard_map.toml", "files/shard_map.toml"),
    Copy("infra/prometheus/rules.yml", "files/prometheus/rules.yml"),
)


def drifted(project_root: Path = REPO, k8s_dir: Path = K8S_DIR) -> list[Copy]:
    """The copies that are missing or differ from their original."""
    return [copy for copy in COPIES if copy.drifted(project_root, k8s_dir)]


def refresh(project_root: Path = REPO, k8s_dir: Path = K8S_DIR) -> list[Copy]:
    """Bring every drifted copy up to date; returns the ones it rewrote."""
    stale = drifted(project_root, k8s_dir)
    for copy in stale:
        copy.refresh(project_root, k8s_dir)
    return stale


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: python -m infra.k8s.copies [--check]", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        stale = drifted()
        for copy in stale:
            print(
                f"infra/k8s/{copy.copy} differs from {copy.original}: run python -m infra.k8s.copies", file=sys.stderr
            )
        return 1 if stale else 0
    for copy in refresh():
        print(f"infra/k8s/{copy.copy} <- {copy.original}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
