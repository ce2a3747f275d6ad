"""A real browser for the console's tests: Debian's chromium driven by Playwright (its own browser download
cannot be fetched here). Skipped, saying why, without chromium or Playwright — a failure under CI, which
installs both (``.ci/run``'s apt line, the test extras).

``ConsolePage`` is the console's page as a person uses it: it reads what the page shows (the DOM's
``data-*`` attributes the page writes from ``GET /api/state``), clicks an action's button and confirms it,
collects every console error and uncaught exception, and saves screenshots under ``tests/artifacts/console/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from infra.paths import REPO

ARTIFACTS = REPO / "tests" / "artifacts" / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
T = TypeVar("T")


def require_chromium() -> str:
    found = shutil.which("chromium")
    reason = None
    if found is None:
        reason = "chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "Playwright for Python is not installed (the test extras: make venv)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}", pytrace=False)
        pytest.skip(reason=reason)
    return found  # type: ignore[return-value]


class ConsolePage:
    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def screenshot(self, what: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{what}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def containers(self, service: str) -> list[dict[str, Any]]:
        """The containers the topology panel shows for ``service``: name, state, restarts, rate, workers."""
        return self.page.eval_on_selector_all(
            f'[data-testid="container"][data-service="{service}"]',
            """rows => rows.map(r => ({
                name: r.dataset.name, id: r.dataset.id, state: r.dataset.state, health: r.dataset.health,
                restarts: Number(r.dataset.restarts),
                rate: Number(r.querySelector('[data-testid="container-rate"]')?.dataset.rate ?? 'NaN'),
                workers: [...r.querySelectorAll('[data-testid="worker"]')].map(w => Number(w.dataset.rate)),
            }))""",
        )

    def balancer_rate(self) -> float:
        found = self.page.query_selector('[data-testid="balancer-rate"]')
        return float(found.get_attribute("data-rate")) if found else float("nan")

    def ages(self) -> dict[str, float | None]:
        """Each live chart's data age as the page showed it when it last drew (s; None: no data)."""
        shown = self.page.eval_on_selector_all(
            '[data-testid="age"]', "badges => badges.map(b => [b.dataset.chart, b.dataset.age ?? ''])"
        )
        return {chart: float(age) if age else None for chart, age in shown}

    def charts(self) -> dict[str, dict[str, float]]:
        """What each live chart drew at its last point (chart -> label -> value), read in one go: one draw."""
        drawn = self.page.eval_on_selector_all(
            '[data-testid="chart"]', "charts => charts.map(c => [c.dataset.chart, c.dataset.last ?? ''])"
        )
        return {chart: json.loads(last) if last else {} for chart, last in drawn}

    def events(self) -> list[dict[str, str]]:
        return self.page.eval_on_selector_all(
            '[data-testid="event"]',
            "items => items.map(i => ({kind: i.dataset.kind, action: i.dataset.action, text: i.textContent}))",
        )

    def act(self, action: str, **fields: str) -> None:
        """Fill the action's form, press its button, confirm in the dialog."""
        form = self.page.locator(f'form[data-action="{action}"]')
        for name, value in fields.items():
            field = form.locator(f'[name="{name}"]')
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(value)
            else:
                field.fill(value)
        form.locator('button[type="submit"]').click()
        self.page.locator('[data-testid="confirm-ok"]').click()

    def wait(
        self, condition: Callable[[], T], timeout: float, what: str, shown: Callable[[], object] | None = None
    ) -> T:
        """Until ``condition`` (reading the page) is truthy; the page polls every second on its own. On a timeout
        the error gives ``shown()``: what the page showed instead."""
        deadline, last = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            last = condition()
            if last:
                return last
            self.page.wait_for_timeout(500)
        self.screenshot("timeout")
        instead = f"; the page showed {shown()!r}" if shown else ""
        raise AssertionError(f"the console did not show {what} within {timeout:g} s (last: {last!r}{instead})")


@contextmanager
def console_page(url: str, name: str, *, user: str = "admin", password: str | None = None) -> Iterator[ConsolePage]:
    from playwright.sync_api import sync_playwright

    executable = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            credentials = {"username": user, "password": password} if password else None
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, http_credentials=credentials)
            page = context.new_page()
            console = ConsolePage(page, name)
            page.goto(url, wait_until="domcontentloaded")
            yield console
        finally:
            browser.close()
