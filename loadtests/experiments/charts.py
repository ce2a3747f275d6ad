"""Inline SVG charts for the HTML reports: no JavaScript, no external files, no network.

Two kinds only: lines over time (throughput, percentiles) and horizontal bars (requests
per worker or per container). Each returns one ``<svg>`` element as a string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

Line = Sequence[tuple[float, float | None]]  # (x, y); y None: a gap


GRID_LINES = 4  # an axis is cut in this many equal steps


def nice_step(value: float) -> float:
    """The round number at or just above ``value``: 1, 2, 2.5 or 5 × 10^n."""
    if value <= 0:
        return 0.25
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude * (1 + 1e-9):
            return step * magnitude
    return 10 * magnitude


def nice_max(value: float) -> float:
    """An axis top at or above ``value`` whose ``GRID_LINES`` steps are round numbers."""
    return GRID_LINES * nice_step(value / GRID_LINES)


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def line_chart(
    title: str,
    lines: Mapping[str, Line],
    *,
    x_label: str = "seconds",
    y_label: str = "",
    width: int = 640,
    height: int = 240,
) -> str:
    """One line per entry of ``lines``, on shared axes starting at 0; the legend below, one line each."""
    left, right, top, bottom = 56, 12, 28, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    height += 14 * len(lines)
    xs = [x for line in lines.values() for x, _ in line]
    ys = [y for line in lines.values() for _, y in line if y is not None]
    x_max = max(xs, default=0.0) or 1.0
    y_max = nice_max(max(ys, default=0.0))

    def px(x: float) -> float:
        return left + plot_w * x / x_max

    def py(y: float) -> float:
        return top + plot_h * (1 - y / y_max)

    parts = [_open(width, height, title), _text(left, 16, title, weight="bold")]
    for i in range(GRID_LINES + 1):  # horizontal grid with its labels
        value = y_max * i / GRID_LINES
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{py(value):.1f}" y2="{py(value):.1f}" stroke="#ddd"/>'
        )
        parts.append(_text(left - 4, py(value) + 4, _label(value), anchor="end"))
    for i in range(GRID_LINES + 1):
        value = x_max * i / GRID_LINES
        parts.append(_text(px(value), top + plot_h + 14, _label(value), anchor="middle"))
    parts.append(_text(left + plot_w / 2, top + plot_h + 28, x_label, anchor="middle"))
    if y_label:
        parts.append(
            f'<text x="12" y="{top + plot_h / 2:.1f}" {FONT} text-anchor="middle" '
            f'transform="rotate(-90 12 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
        )
    for index, (name, line) in enumerate(lines.items()):
        color = PALETTE[index % len(PALETTE)]
        for segment in _segments(line):
            points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in segment)
            if len(segment) == 1:
                parts.append(
                    f'<circle cx="{px(segment[0][0]):.1f}" cy="{py(segment[0][1]):.1f}" r="2" fill="{color}"/>'
                )
            else:
                parts.append(
                    f'<polyline class="series" points="{points}" fill="none" stroke="{color}" stroke-width="1.8"/>'
                )
        legend_y = top + plot_h + bottom + 14 * index
        parts.append(f'<rect x="{left}" y="{legend_y - 4}" width="14" height="3" fill="{color}"/>')
        parts.append(_text(left + 20, legend_y, name))
    parts.append("</svg>")
    return "\n".join(parts)


def bar_chart(title: str, bars: Sequence[tuple[str, float]], *, width: int = 640, unit: str = "requests") -> str:
    """Horizontal bars, one per (label, value), longest first as given."""
    left, right, top, row = 170, 70, 28, 18
    height = top + row * max(1, len(bars)) + 10
    plot_w = width - left - right
    top_value = max((value for _, value in bars), default=0.0) or 1.0
    parts = [_open(width, height, title), _text(8, 16, title, weight="bold")]
    if not bars:
        parts.append(_text(left, top + 12, f"no {unit} recorded"))
    for index, (name, value) in enumerate(bars):
        y = top + index * row
        length = plot_w * value / top_value
        parts.append(_text(left - 6, y + 12, name, anchor="end"))
        parts.append(
            f'<rect class="bar" x="{left}" y="{y + 2}" width="{length:.1f}" height="{row - 5}" fill="{PALETTE[0]}"/>'
        )
        parts.append(_text(left + length + 4, y + 12, _label(value)))
    parts.append("</svg>")
    return "\n".join(parts)


def _segments(line: Line) -> list[list[tuple[float, float]]]:
    """Split a line at its gaps (y None)."""
    segments: list[list[tuple[float, float]]] = [[]]
    for x, y in line:
        if y is None:
            if segments[-1]:
                segments.append([])
        else:
            segments[-1].append((x, y))
    return [segment for segment in segments if segment]


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
    )


def _text(x: float, y: float, text: str, *, anchor: str = "start", weight: str = "normal") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" {FONT} text-anchor="{anchor}" font-weight="{weight}">{escape(text)}</text>'
