"""``scalecube bench router``: a short real run (router, shard, two Redis, the load driver)."""

from __future__ import annotations

import io

from rich.console import Console

from loadtests.benchmarks import router as router_bench


def test_a_short_run_measures_both_paths_and_the_routers_pool() -> None:
    report = router_bench.run(seconds=1, connections=8, rounds=1, users=20, placements=("shared",))
    result = report.placements["shared"]
    for target in router_bench.TARGETS:
        assert result.throughput[target]["rps"] > 0 and result.throughput[target]["errors"] == 0, target
        assert result.latency[target]["p50_ms"] is not None, target
    assert set(result.cpu_ms_per_request[router_bench.TARGETS[1]]) == {"router", "shard", "load"}
    assert result.cpu_ms_per_request[router_bench.TARGETS[1]]["router"] > 0
    assert result.ratio is not None and result.ratio > 0
    # The router kept its connections to the shard open (pooled), within its limit.
    assert result.shard_connections_limit == router_bench.ROUTER_POOL_PER_WORKER
    assert 1 <= result.shard_connections <= result.shard_connections_limit

    out = io.StringIO()
    router_bench.render(report, Console(file=out, width=200))
    assert "through the router" in out.getvalue() and "connections open on the shard" in out.getvalue()
