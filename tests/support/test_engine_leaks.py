"""The engine check's comparison: only what is new counts, by id (a name reused by a new object is new)."""

from tests.support.engine_leaks import leftovers


def test_new_objects_are_named_and_old_ones_ignored():
    before = {"containers": {"c1": "old"}, "networks": {"n1": "bridge"}, "volumes": {}, "images": {"i1": "base:1"}}
    after = {
        "containers": {"c1": "old"},
        "networks": {"n1": "bridge", "n2": "docker_gwbridge"},
        "volumes": {"v1": "sctest_redis-data"},
        "images": {"i1": "base:1", "i2": "base:1"},
    }
    assert leftovers(before, after) == {
        "networks": ["docker_gwbridge"],
        "volumes": ["sctest_redis-data"],
        "images": ["base:1"],
    }
    assert leftovers(after, after) == {}
