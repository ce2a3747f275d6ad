"""Judging: each guide's claim against what was measured, as small pure functions.

A ``Claim`` holds, fails, is reported but not judged (a performance target under
``--smoke``, where the load is too small to mean anything), or is skipped (what it needs
was not run, e.g. against ``--target``). A claim judged on no evidence — zero requests —
fails: a demo that measured nothing must not pass. Nor may a demo that judged nothing: with no
claim held or failed, its exit code is 2 (``NOTHING_JUDGED``), as for a missing part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    HOLDS = "holds"
    FAILS = "fails"
    NOT_JUDGED = "not judged"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Claim:
    name: str  # what the guide says, e.g. "cluster ≥ 1.6× one process"
    measured: float | None
    threshold: float | None
    verdict: Verdict
    text: str  # how it was measured, in words, with the numbers
    unit: str = ""

    @property
    def holds(self) -> bool:
        return self.verdict is Verdict.HOLDS

    @property
    def judged(self) -> bool:
        return self.verdict in (Verdict.HOLDS, Verdict.FAILS)


def _judge(
    name: str,
    measured: float | None,
    threshold: float | None,
    ok: bool,
    text: str,
    *,
    judge: bool,
    why_not: str,
    unit: str,
) -> Claim:
    if not judge:
        return Claim(name, measured, threshold, Verdict.NOT_JUDGED, f"{text} — not judged: {why_not}", unit)
    return Claim(name, measured, threshold, Verdict.HOLDS if ok else Verdict.FAILS, text, unit)


def skipped(name: str, reason: str, threshold: float | None = None, unit: str = "") -> Claim:
    return Claim(name, None, threshold, Verdict.SKIPPED, reason, unit)


def ratio_at_least(
    name: str,
    value: float,
    baseline: float,
    threshold: float,
    *,
    what: str,
    baseline_what: str,
    judge: bool = True,
    why_not: str = "too little load to measure throughput",
) -> Claim:
    """``value / baseline >= threshold`` (e.g. cluster req/s over one process's)."""
    if baseline <= 0 or value <= 0:
        return _judge(
            name,
            None,
            threshold,
            False,
            f"no throughput measured ({what} {value:.1f}, {baseline_what} {baseline:.1f} req/s)",
            judge=judge,
            why_not=why_not,
            unit="×",
        )
    ratio = value / baseline
    text = f"{what} {value:.1f} req/s = {ratio:.2f}× {baseline_what} {baseline:.1f} req/s (needs ≥ {threshold:g}×)"
    return _judge(name, round(ratio, 3), threshold, ratio >= threshold, text, judge=judge, why_not=why_not, unit="×")


def success_at_least(
    name: str, requests: int, failures: int, threshold_pct: float, *, judge: bool = True, why_not: str = ""
) -> Claim:
    """At least ``threshold_pct`` % of ``requests`` succeeded."""
    if requests <= 0:
        return _judge(name, None, threshold_pct, False, "no requests measured", judge=judge, why_not=why_not, unit="%")
    pct = 100.0 * (requests - failures) / requests
    text = f"{requests - failures:,} of {requests:,} succeeded ({pct:.2f}%, {failures:,} failed; needs ≥ {threshold_pct:g}%)"
    return _judge(
        name, round(pct, 3), threshold_pct, pct >= threshold_pct, text, judge=judge, why_not=why_not, unit="%"
    )


def no_failures(
    name: str, requests: int, failures: int, *, what: str = "requests", judge: bool = True, why_not: str = ""
) -> Claim:
    """Not one of ``requests`` failed (and there were some)."""
    if requests <= 0:
        return _judge(name, None, 0, False, f"no {what} measured", judge=judge, why_not=why_not, unit="failed")
    text = f"{failures:,} of {requests:,} {what} failed"
    return _judge(name, failures, 0, failures == 0, text, judge=judge, why_not=why_not, unit="failed")


def loses_sessions(name: str, checked: int, lost: int, *, judge: bool = True, why_not: str = "") -> Claim:
    """The failure the guides predict: some sessions are lost (measured: the % of checks that found none)."""
    if checked <= 0:
        return _judge(name, None, 0, False, "no session checks measured", judge=judge, why_not=why_not, unit="%")
    pct = 100.0 * lost / checked
    text = f"{lost:,} of {checked:,} session checks found no session ({pct:.1f}% lost; the claim needs > 0)"
    return _judge(name, round(pct, 3), 0, lost > 0, text, judge=judge, why_not=why_not, unit="% lost")


def loses_no_sessions(name: str, checked: int, lost: int, *, judge: bool = True, why_not: str = "") -> Claim:
    if checked <= 0:
        return _judge(name, None, 0, False, "no session checks measured", judge=judge, why_not=why_not, unit="%")
    pct = 100.0 * lost / checked
    text = f"{lost:,} of {checked:,} session checks found no session ({pct:.1f}% lost; the claim needs 0)"
    return _judge(name, round(pct, 3), 0, lost == 0, text, judge=judge, why_not=why_not, unit="% lost")


def every_one_serves(name: str, served: Iterable[object], expected: int, what: str, requests: int) -> Claim:
    """Each of ``expected`` clones (workers, replicas, containers) served some of the ``requests``; ``served``
    names the ones that did (e.g. pids, or containers' names)."""
    seen = sorted({str(item) for item in served})
    if requests <= 0:
        return Claim(name, None, expected, Verdict.FAILS, "no requests measured", what)
    text = f"{len(seen)} of {expected} {what} served the {requests:,} requests ({', '.join(seen) or 'none'})"
    return Claim(name, len(seen), expected, Verdict.HOLDS if len(seen) >= expected else Verdict.FAILS, text, what)


HOLD, FAILED, NOTHING_JUDGED = 0, 1, 2  # a demo's exit codes (2 is also the CLI's usage / missing part)


def exit_code(claims: Iterable[Claim]) -> int:
    """0 when every judged claim holds, 1 when one fails (skipped and not-judged ones do not count), 2 when
    none was judged at all: a demo that cannot fail proves nothing, so it does not pass."""
    claims = list(claims)
    if any(claim.verdict is Verdict.FAILS for claim in claims):
        return FAILED
    return HOLD if any(claim.judged for claim in claims) else NOTHING_JUDGED
