"""The containers' healthcheck: exit 0 when the service answers its readiness URL.

Standard library only, so the check costs a few milliseconds every interval.
By default it asks the cluster master's health port (``$HEALTH_PORT``, set in the service image:
answered even when every worker is busy), else the service port; ``HEALTHCHECK_URL`` overrides both.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("HEALTH_PORT") or os.environ.get("PORT", "8000")
    url = os.environ.get("HEALTHCHECK_URL") or f"http://127.0.0.1:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status < 400 else 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
