"""The tree is laid out by `ruff format` and clean under `ruff check`, with pyproject.toml's ``[tool.ruff]``: the
tool owns the layout, so a change that breaks it fails here, saying where (`ruff format` fixes it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.paths import REPO

RUFF = Path(sys.executable).parent / "ruff"  # the venv's ruff (the dev extra)


@pytest.mark.parametrize(
    "command",
    [["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]],
    ids=["check", "format"],
)
def test_ruff_finds_nothing(command: list[str]) -> None:
    result = subprocess.run([str(RUFF), *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
