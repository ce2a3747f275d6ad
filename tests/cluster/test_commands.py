"""The control socket's commands against a stand-in master (in-process, no processes).

The real master answers the same commands in tests/cluster/test_manage.py (``scalecube reload/scale/stop``)."""

import asyncio

import pytest

from cluster.commands import Commands


class Outcome:
    def as_dict(self):
        return {"ok": True, "replaced": [[1, 2]]}


class FakeMaster:
    def __init__(self, workers: int = 2) -> None:
        self.worker_count, self.stopping, self.stops, self.reloads = workers, False, 0, 0

    def status(self):
        return {"master": {"target_workers": self.worker_count}, "workers": []}

    def spawn_task(self, fn):
        return asyncio.ensure_future(fn())

    async def reload(self):
        self.reloads += 1
        await asyncio.sleep(0)
        return Outcome()

    def scale(self, delta: int) -> None:
        self.worker_count += delta

    def stop(self, exit_code: int = 0) -> None:
        self.stops += 1
        self.stopping = True


def ask(master: FakeMaster, **request):
    return asyncio.run(Commands(master)(request))


def test_status_is_the_masters_own():
    assert ask(FakeMaster(3), cmd="status") == {"master": {"target_workers": 3}, "workers": []}


def test_an_unknown_command_names_the_known_ones():
    answer = ask(FakeMaster(), cmd="restart")
    assert answer == {"ok": False, "error": "unknown command 'restart'; try status, reload, scale, stop"}


@pytest.mark.parametrize(
    ("request_", "workers"),
    [({"delta": 2}, 4), ({"delta": -1}, 1), ({"to": 5}, 5), ({"to": "1"}, 1), ({}, 2)],
)
def test_scale_by_a_delta_or_to_a_count(request_, workers):
    master = FakeMaster(2)
    assert ask(master, cmd="scale", **request_) == {"ok": True, "workers": workers}
    assert master.worker_count == workers


@pytest.mark.parametrize("request_", [{"to": 0}, {"delta": -2}, {"to": "many"}, {"delta": None}])
def test_scale_refuses_nothing_left_or_not_a_number_and_changes_nothing(request_):
    master = FakeMaster(2)
    answer = ask(master, cmd="scale", **request_)
    assert answer["ok"] is False and answer["error"]
    assert master.worker_count == 2


def test_reload_answers_at_once_or_when_done():
    master = FakeMaster()
    assert ask(master, cmd="reload") == {"ok": True, "message": "rolling reload started"}
    assert ask(master, cmd="reload", wait=True) == {"ok": True, "replaced": [[1, 2]]}
    assert master.reloads == 2


def test_a_second_stop_is_not_repeated_unless_forced():
    master = FakeMaster()
    assert ask(master, cmd="stop")["ok"] is True
    ask(master, cmd="stop")
    assert master.stops == 1
    ask(master, cmd="stop", force=True)
    assert master.stops == 2
