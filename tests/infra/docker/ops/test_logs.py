"""Log merging's pure parts: lines out of arbitrary chunks, timestamps, compose's prefix, the time merge."""

from __future__ import annotations

from infra.docker.ops.logs import LogLine, format_line, lines_of, merge_by_time, prefix_width, split_timestamp


def test_lines_are_whole_whatever_the_chunks():
    chunks = [b"first li", b"ne\nsecond\nthi", b"rd\r\n", b"partial"]
    assert list(lines_of(chunks)) == ["first line", "second", "third", "partial"]
    assert list(lines_of([])) == []
    assert list(lines_of([b"caf\xc3", b"\xa9\n"])) == ["café"]  # a UTF-8 character cut in two


def test_engine_timestamps_are_split_off():
    assert split_timestamp("2026-11-21T12:45:10.345678901Z hello world") == (
        "2026-11-21T12:45:10.345678901Z",
        "hello world",
    )
    assert split_timestamp("no timestamp here") == ("", "no timestamp here")


def test_prefix_is_compose_like_and_padded():
    width = prefix_width(["api-1", "api-10"])
    assert format_line(LogLine("t", "api-1", "hello"), width) == "api-1  | hello"
    assert (
        format_line(LogLine("2026-01-01T00:00:00Z", "api-10", "x"), width, timestamps=True)
        == "api-10 | 2026-01-01T00:00:00Z x"
    )


def test_merge_orders_across_containers_and_keeps_each_ones_order():
    a = [LogLine("2026-01-01T00:00:01Z", "api-1", "a1"), LogLine("2026-01-01T00:00:03Z", "api-1", "a2")]
    b = [LogLine("2026-01-01T00:00:02Z", "api-2", "b1"), LogLine("2026-01-01T00:00:04Z", "api-2", "b2")]
    assert [line.text for line in merge_by_time([a, b])] == ["a1", "b1", "a2", "b2"]
