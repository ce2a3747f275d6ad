"""scalecube's Locust profiles: ``locust -f loadtests/locust/locustfile.py --host http://127.0.0.1:8080``.

User classes (pick with ``--class-picker`` in the web UI, or by name on the command line):
CloningUser, SessionUser, SplittingUser, AuthUser, MixedUser; tags and weights in
``loadtests.locust.users``. Shapes are separate files, added with ``-f``:
``-f loadtests/locust/locustfile.py,loadtests/locust/shapes/step.py`` (or ``shapes/ramp.py``).
Thresholds for CI: ``--max-fail-ratio``, ``--max-p95-ms``, ``--max-p99-ms`` (exit code 3).
Options, on the command line or in the environment: ``loadtests.locust.options`` (SCALECUBE_CPU_ITERATIONS,
SCALECUBE_AUTH_PASSWORDS, SCALECUBE_AUTH_URL, SCALECUBE_ROUTER_URL, SCALECUBE_NEW_CONNECTIONS,
SCALECUBE_WAIT_MIN/MAX, SCALECUBE_SERVED_BY_FILE). Classes the ``--host`` cannot serve (no router, no auth) are not offered
(``loadtests.locust.offered``).

Everything lives in the installed ``loadtests`` package, so this file works from any path
(the compose image runs ``-f /app/loadtests/locust/locustfile.py``).
"""

# Imported for their listeners: the run clock, the served-by tally, the thresholds, the tag selection, the
# classes offered.
from loadtests.locust import offered, run_clock, served_by, tag_selection, thresholds  # noqa: F401
from loadtests.locust.users import AuthUser, CloningUser, MixedUser, SessionUser, SplittingUser

__all__ = ["AuthUser", "CloningUser", "MixedUser", "SessionUser", "SplittingUser"]
