"""The admin port's human page: one self-contained HTML document, refreshed by the browser.

Rendered from the same dict as ``/status.json``, so the two never disagree.
Every value is escaped: backend addresses and discovery errors come from outside.
"""

from __future__ import annotations

from html import escape
from typing import Any

REFRESH_SECONDS = 2
BACKEND_COLUMNS = (
    "address",
    "id",
    "state",
    "inflight",
    "served",
    "failed",
    "timeouts",
    "retried_away",
    "ejections",
    "since",
)

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { padding: .2em .7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.up { color: #176f2c; font-weight: 600; } .ejected { color: #b3261e; font-weight: 600; } .removed { color: #777; }
.muted { color: #666; } .error { color: #b3261e; }
.panic { color: #fff; background: #b3261e; padding: .1em .5em; font-weight: 600; }
"""


def _state(backend: dict[str, Any]) -> str:
    return "removed" if backend["removed"] else "up" if backend["healthy"] else "ejected"


def _state_text(backend: dict[str, Any]) -> str:
    """The state, and whether an ejected backend still takes requests (its group is in panic)."""
    state = _state(backend)
    return f"{state} (in panic use)" if state == "ejected" and backend.get("routable") else state


def _cell(value: object, css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<td{attr}>{escape(str(value))}</td>"


def _pool(pool: dict[str, Any]) -> str:
    name = pool["name"]
    discovery = pool.get("discovery") or {}
    health = pool.get("health") or {}
    where = ", ".join(f"{k}={v}" for k, v in discovery.items() if k not in ("addresses", "error") and v is not None)
    parts = [
        f"<h2>{escape(name)} <span class='muted'>({escape(pool['policy'])}, "
        f"{pool['available']} of {len(pool['backends'])} available)</span></h2>"
    ]
    if pool.get("panic"):
        routable = sum(1 for b in pool["backends"] if b.get("routable"))
        parts.append(
            f"<div class='panic'>PANIC: too few healthy backends, routing to {routable} of them anyway "
            f"({pool['panic_requests']} requests so far)</div>"
        )
    if where:
        parts.append(f"<div class='muted'>discovery: {escape(where)}</div>")
    if discovery.get("error"):
        parts.append(f"<div class='error'>discovery failing, last list kept: {escape(str(discovery['error']))}</div>")
    if health:
        path = escape(str(health.get("path")))
        port = f" on port {health['port']}" if health.get("port") else ""
        parts.append(
            f"<div class='muted'>checks: GET {path}{port} every {health.get('interval')}s, "
            f"rise {health.get('rise')}, fall {health.get('fall')}</div>"
        )
    header = "".join(f"<th>{c}</th>" for c in BACKEND_COLUMNS)
    rows = []
    for backend in pool["backends"]:
        state = _state(backend)
        cells = [_cell(backend["address"]), _cell(backend["id"], "muted"), _cell(_state_text(backend), state)]
        cells += [_cell(backend[c]) for c in BACKEND_COLUMNS[3:-1]] + [_cell(f"{backend['since']}s")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        rows.append(f"<tr><td colspan='{len(BACKEND_COLUMNS)}' class='muted'>no backends</td></tr>")
    parts.append(f"<table><tr>{header}</tr>{''.join(rows)}</table>")
    return "\n".join(parts)


def render_status_page(status: dict[str, Any]) -> str:
    routes = "".join(f"<tr>{_cell(r['prefix'])}{_cell(r['upstream'])}</tr>" for r in status["routes"])
    stats = "".join(f"<tr>{_cell(k)}{_cell(v)}</tr>" for k, v in status["stats"].items())
    pools = "\n".join(_pool(pool) for pool in status["pools"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>scalecube lb</title><style>{STYLE}</style></head>
<body>
<h1>scalecube balancer <span class="muted">pid {status["pid"]}, up {status["uptime"]:.0f}s</span></h1>
{pools}
<h2>routes</h2><table><tr><th>prefix</th><th>upstream</th></tr>{routes}</table>
<h2>counters</h2><table>{stats}</table>
<p class="muted"><a href="/status.json">status.json</a> · <a href="/metrics">metrics</a> ·
refreshes every {REFRESH_SECONDS}s</p>
</body></html>
"""
