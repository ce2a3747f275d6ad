"""The inline SVG charts: well-formed, self-contained, one mark per series or bar."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from loadtests.experiments import charts

SVG = "{http://www.w3.org/2000/svg}"


def test_line_chart_draws_one_polyline_per_series_and_splits_at_gaps() -> None:
    svg = charts.line_chart("req/s", {"a": [(0, 1), (1, 2), (2, 3)], "b": [(0, 5), (1, None), (2, 4), (3, 6)]})
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # a; b after its gap (its first point alone is a dot)
    assert len(root.findall(f"{SVG}circle")) == 1
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "req/s" in texts and "a" in texts and "b" in texts


def test_line_chart_scales_to_a_round_top_and_keeps_points_inside() -> None:
    svg = charts.line_chart("t", {"x": [(0, 0), (10, 73)]}, width=400, height=200)
    points = ET.fromstring(svg).find(f"{SVG}polyline").get("points").split()  # type: ignore[union-attr]
    for point in points:
        x, y = map(float, point.split(","))
        assert 0 <= x <= 400 and 0 <= y <= 200 - 40  # inside the plot, above the axis labels
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert {"0", "20", "40", "60", "80"} <= set(labels)  # 73 -> an axis to 80 in steps of 20


def test_empty_charts_still_render() -> None:
    assert ET.fromstring(charts.line_chart("nothing", {})).tag == f"{SVG}svg"
    root = ET.fromstring(charts.bar_chart("none", []))
    assert any("no requests" in (t.text or "") for t in root.iter(f"{SVG}text"))


def test_bar_chart_one_bar_per_entry_longest_for_the_largest() -> None:
    root = ET.fromstring(charts.bar_chart("per worker", [("vm/1", 300), ("vm/2", 150), ("<b>", 0)]))
    bars = [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]
    widths = [float(r.get("width", 0)) for r in bars]
    assert len(bars) == 3 and widths[0] == max(widths) and widths[1] == widths[0] / 2 and widths[2] == 0
    assert "<b>" in [t.text for t in root.iter(f"{SVG}text")]  # escaped in the markup, text again once parsed


def test_axis_tops_split_into_round_steps() -> None:
    assert [charts.nice_step(v) for v in (0.7, 1, 1.2, 3, 7, 25, 26)] == [1, 1, 2, 5, 10, 25, 50]
    assert [charts.nice_max(v) for v in (0, 4, 73, 250, 251)] == [1, 4, 80, 400, 400]
