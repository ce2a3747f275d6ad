"""Where the checkout is: the one definition of the repository's root for everything that runs from it.

The local stack, the image builds, the k8s checks, the load tests and the tests start processes with
``cwd=REPO`` (``python -m scalecube`` and the apps import from there) and read files beside the code
(docker-compose.yml, the Dockerfile, infra/k8s). The products (``cluster``, ``lb``, ``services``, ...) never
ask: they find their own files next to their modules, and run wherever they are installed.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # infra/paths.py -> the checkout
