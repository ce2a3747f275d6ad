"""The import contracts of pyproject.toml's ``[tool.importlinter]`` hold: the layers (the CLI on top, kit at the
ground), the services' independence, no circles inside a package.

`lint-imports` reads the source statically (no import runs), in well under a second."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from infra.paths import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"  # the venv's console script (the dev extra)


def test_every_import_contract_is_kept() -> None:
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"lint-imports exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout, result.stdout
