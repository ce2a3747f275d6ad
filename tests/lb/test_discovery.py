"""Discovery keeps a pool's membership current: a fixed list, a real DNS server, a real Docker engine."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import dns.resolver
import pytest

from infra.local.dns import write_zone
from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from lb.discovery import (
    DiscoverySpec,
    DnsDiscovery,
    DockerDiscovery,
    DockerUnavailable,
    StaticDiscovery,
    container_address,
    discovery_from_spec,
    parse_discovery_spec,
)
from lb.pool import Pool

INTERVAL = 0.2


async def eventually(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Until ``predicate`` holds, polled in the running loop (bounded; generous for a busy machine)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def run_with(discovery, pool: Pool, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``discovery`` against ``pool`` while ``scenario`` plays, then cancel it like the balancer does."""

    async def main() -> None:
        task = asyncio.create_task(discovery.run(pool))
        try:
            await scenario()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def available(pool: Pool) -> set[tuple[str, int]]:
    return {b.address for b in pool.backends.values() if b.available}


# -- specs ----------------------------------------------------------------------------


def test_specs_parse():
    assert parse_discovery_spec("static:127.0.0.1:8001, 127.0.0.1:8002") == DiscoverySpec(
        "static", addresses=(("127.0.0.1", 8001), ("127.0.0.1", 8002))
    )
    assert parse_discovery_spec("static:[::1]:8001").addresses == (("::1", 8001),)
    assert parse_discovery_spec("dns:api:8000") == DiscoverySpec("dns", name="api", port=8000)
    assert parse_discovery_spec("dns:api.internal:80@127.0.0.1:5353") == DiscoverySpec(
        "dns", name="api.internal", port=80, nameserver="127.0.0.1:5353"
    )
    assert parse_discovery_spec("docker:api:8000") == DiscoverySpec("docker", name="api", port=8000)
    assert parse_discovery_spec("docker:api:8000?project=scalecube&network=backend") == DiscoverySpec(
        "docker", name="api", port=8000, project="scalecube", network="backend"
    )
    assert isinstance(discovery_from_spec("static:127.0.0.1:1"), StaticDiscovery)
    dns_discovery = discovery_from_spec("dns:api:8000@127.0.0.1:5353", interval=0.5)
    assert isinstance(dns_discovery, DnsDiscovery) and dns_discovery.interval == 0.5
    assert dns_discovery.resolver.nameservers == ["127.0.0.1"] and dns_discovery.resolver.port == 5353
    assert isinstance(discovery_from_spec("docker:api:8000?project=p"), DockerDiscovery)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("api:8000", "must start with one of static:, dns:, docker:"),
        ("consul:api:8000", "must start with one of"),
        ("static:", "static needs at least one host:port"),
        ("static:127.0.0.1", "expected host:port"),
        ("static:127.0.0.1:0", "port must be a number from 1 to 65535"),
        ("static:127.0.0.1:http", "port must be a number from 1 to 65535, got 'http'"),
        ("dns:api", "expected dns:NAME:PORT"),
        ("dns::8000", "expected dns:NAME:PORT"),
        ("dns:api:8000@127.0.0.1", "nameserver: expected host:port"),
        ("dns:api:8000@dns.local:53", "the nameserver must be an IP address, got 'dns.local'"),
        ("docker:api:99999", "port must be a number"),
        ("docker:api:8000?projet=x", "unknown docker option(s) projet"),
    ],
)
def test_bad_specs_are_explained(spec, message):
    with pytest.raises(ValueError) as caught:
        parse_discovery_spec(spec)
    assert message in str(caught.value) and repr(spec) in str(caught.value)


# -- static -----------------------------------------------------------------------------


def test_static_sets_the_list_once():
    pool = Pool("api")
    discovery = StaticDiscovery([("127.0.0.1", 8001), ("127.0.0.1", 8002)])

    async def scenario() -> None:
        await eventually(lambda: available(pool) == {("127.0.0.1", 8001), ("127.0.0.1", 8002)}, 1)

    run_with(discovery, pool, scenario)
    assert discovery.describe()["addresses"] == ["127.0.0.1:8001", "127.0.0.1:8002"]
    assert discovery.describe()["kind"] == "static" and discovery.describe()["error"] is None


# -- DNS, against the real loopback DNS server ------------------------------------------------


class DnsServer:
    def __init__(self, tmp_path: Path) -> None:
        self.zone = tmp_path / "zone.json"
        self.port = free_port()
        self.log = tmp_path / "dns.log"
        self.process: ManagedProcess | None = None

    def write(self, records: dict[str, list[str]]) -> None:
        write_zone(self.zone, records)  # atomic, with a newer mtime: the server's next answer uses it

    def start(self) -> None:
        self.process = ManagedProcess(
            [sys.executable, "-m", "infra.local.dns", "--zone-file", str(self.zone), "--port", str(self.port)],
            log_path=self.log,
        )
        # Ready when it answers: an NXDOMAIN is an answer.
        probe = DnsDiscovery("ready-probe", 1, nameserver=self.nameserver, timeout=0.3)
        wait_until(lambda: asyncio.run(_answers(probe)), 10, what="the DNS server")

    def stop(self) -> None:
        if self.process:
            self.process.stop()

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _answers(probe: DnsDiscovery) -> bool:
    await probe.refresh(Pool("probe"))
    return probe.error is None


@pytest.fixture
def dns_server(tmp_path):
    server = DnsServer(tmp_path)
    server.write({"api": ["127.0.0.2", "127.0.0.3"]})
    server.start()
    yield server
    server.stop()


class CountedDnsDiscovery(DnsDiscovery):
    """The real DNS discovery, also numbering its look-ups and keeping what each one found."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = 0  # look-ups begun
        self.answers: dict[int, set[tuple[str, int]]] = {}  # look-up number -> what it found, if it got an answer

    async def refresh(self, pool: Pool) -> None:
        self.started += 1
        number = self.started
        await super().refresh(pool)
        if self.error is None:
            self.answers[number] = set(self.addresses)

    def answered_after(self, begun: int) -> list[set[tuple[str, int]]]:
        """What each answered look-up numbered after ``begun`` found, in order."""
        return [found for number, found in sorted(self.answers.items()) if number > begun]


def test_dns_follows_the_zone(dns_server):
    pool = Pool("api")
    discovery = CountedDnsDiscovery("api", 8000, interval=INTERVAL, nameserver=dns_server.nameserver)

    async def scenario() -> None:
        await eventually(lambda: available(pool) == {("127.0.0.2", 8000), ("127.0.0.3", 8000)}, what="first look-up")
        leaving = pool.backends[("127.0.0.2", 8000)]
        leaving.inflight = 1  # a request still in flight keeps it listed, as removed

        scaled = {("127.0.0.3", 8000), ("127.0.0.4", 8000), ("127.0.0.5", 8000)}
        dns_server.write({"api": ["127.0.0.3", "127.0.0.4", "127.0.0.5"]})  # blocks the loop: no look-up starts
        begun = discovery.started  # the last of these may have asked before the write
        await eventually(
            lambda: available(pool) == scaled and discovery.answered_after(begun),
            what="the scale change, and a look-up begun after the write",
        )
        # Counted in look-ups, not seconds: every look-up begun after the write found the new set, the
        # first one included. (A resolver caching the server's 1 s TTL would have answered the old set
        # for about 1 / INTERVAL look-ups more.)
        assert (after := discovery.answered_after(begun)) and all(found == scaled for found in after), after
        assert leaving.removed and pool.backends[("127.0.0.2", 8000)] is leaving

        leaving.inflight = 0  # its request ended: the next round forgets it
        await eventually(lambda: ("127.0.0.2", 8000) not in pool.backends, what="the drained backend to go")

        dns_server.write({"auth": ["127.0.0.9"]})  # api scaled to zero: NXDOMAIN
        await eventually(lambda: not pool.backends, what="NXDOMAIN to empty the pool")
        assert discovery.error is None  # NXDOMAIN is an answer, not an outage

        dns_server.write({"api": []})  # the name exists with no A record: no backends either
        begun = discovery.started
        await eventually(lambda: len(discovery.answered_after(begun)) >= 3, what="three more look-ups")  # not seconds
        assert not any(discovery.answered_after(begun))
        assert not pool.backends and discovery.error is None

    run_with(discovery, pool, scenario)
    described = discovery.describe()
    assert described["kind"] == "dns" and described["name"] == "api" and described["port"] == 8000
    assert described["nameserver"] == dns_server.nameserver and described["addresses"] == []


def test_dns_outage_keeps_the_last_set_and_logs_once(dns_server, caplog):
    pool = Pool("api")
    discovery = DnsDiscovery("api", 8000, interval=0.1, nameserver=dns_server.nameserver, timeout=0.2)
    caplog.set_level(logging.INFO, logger="scalecube.lb.discovery")

    async def scenario() -> None:
        await eventually(lambda: len(available(pool)) == 2, what="first look-up")
        dns_server.stop()
        await eventually(lambda: discovery.failures >= 3, what="three failed rounds")
        assert available(pool) == {("127.0.0.2", 8000), ("127.0.0.3", 8000)}  # the last known set, kept
        assert discovery.error and "Timeout" in discovery.error

        dns_server.write({"api": ["127.0.0.4"]})
        await asyncio.to_thread(dns_server.start)  # back, on the same port
        await eventually(lambda: available(pool) == {("127.0.0.4", 8000)}, what="recovery")
        assert discovery.error is None

    run_with(discovery, pool, scenario)
    ours = [r for r in caplog.records if r.getMessage().startswith("api:")]  # not the readiness probe's
    warnings = [r for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per outage, not once per round
    assert "keeping the last 2 backends" in warnings[0].getMessage()
    assert any("works again" in r.getMessage() for r in ours)


# -- Docker ---------------------------------------------------------------------------------


def test_container_address_picks_the_network():
    attrs = {
        "NetworkSettings": {
            "Networks": {
                "scalecube_default": {"IPAddress": "172.18.0.5"},
                "scalecube_backend": {"IPAddress": "172.19.0.7"},
                "not_started": {"IPAddress": ""},
            }
        }
    }
    assert container_address(attrs) == "172.18.0.5"  # the first one
    assert container_address(attrs, "scalecube_backend") == "172.19.0.7"
    assert container_address(attrs, "backend", project="scalecube") == "172.19.0.7"  # compose's prefix
    assert container_address(attrs, "not_started") is None
    assert container_address(attrs, "elsewhere") is None
    assert container_address({}) is None


def test_docker_without_an_engine_fails_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    discovery = DockerDiscovery("api", 8000)
    with pytest.raises(DockerUnavailable, match=r"service 'api': no Docker engine reachable at unix://.*no-engine"):
        asyncio.run(discovery.run(Pool("api")))


def docker_client():
    """A client to a running engine, or None (the reason is in the skip message)."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception:
        return None
    return client


SLEEPER = "scalecube-test-sleeper:1"


@pytest.fixture(scope="module")
def sleeper() -> Iterator[str]:
    """A tiny image made from this host's own ``sleep`` and the libraries it links: no registry needed.
    Removed at the end of the module if this module made it (the suite leaves the engine as it found it)."""
    import docker

    client = docker_client()
    if client is None:
        pytest.skip("no Docker engine reachable (docker.from_env().ping() failed)")
    try:
        client.images.get(SLEEPER)
        made = False
    except docker.errors.ImageNotFound:
        import_sleeper(client, SLEEPER)
        made = True
    yield SLEEPER
    if made:
        client.images.remove(SLEEPER)
    client.close()


def import_sleeper(client, tag: str) -> None:
    import io
    import re
    import shutil
    import subprocess
    import tarfile

    binary = shutil.which("sleep")
    assert binary, "no sleep binary on this host"
    libraries = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", binary], capture_output=True, text=True).stdout)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for source, target in [(binary, "bin/sleep"), *((lib, lib.lstrip("/")) for lib in libraries)]:
            tar.add(os.path.realpath(source), arcname=target)  # the file itself, under the name it is linked by
    client.api.import_image_from_data(buffer.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1])


@pytest.fixture
def docker_project(sleeper):
    """A throwaway compose-like project on a real engine: its network and labelled containers go at teardown."""
    client = docker_client()
    assert client is not None  # `sleeper` skips without an engine
    project = f"sctest{os.getpid()}{int(time.time() * 1000) % 100000}"
    network = client.networks.create(f"{project}_default", driver="bridge")
    image = sleeper
    containers = []

    def run(service: str, project_name: str = project):
        labels = {"com.docker.compose.service": service, "com.docker.compose.project": project_name}
        container = client.containers.run(
            image,
            ["/bin/sleep", "120"],
            detach=True,
            labels=labels,
            network=network.name,
            name=f"{project_name}-{service}-{len(containers)}",
        )
        containers.append(container)
        container.reload()
        return container, container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]

    yield client, project, run
    for container in containers:
        container.remove(force=True)
    network.remove()
    client.close()


def test_docker_follows_container_events(docker_project):
    client, project, run = docker_project
    (first, ip1), (_, ip2) = run("api"), run("api")
    run("api", project_name=project + "other")  # same service name, another project: not ours
    run("auth")  # another service of ours: not this upstream
    pool = Pool("api")
    discovery = DockerDiscovery("api", 8000, project=project, network="default", client=client)
    threads_before = {t.name for t in threading.enumerate()}

    async def scenario() -> None:
        await eventually(lambda: available(pool) == {(ip1, 8000), (ip2, 8000)}, 30, what="the first listing")
        _, ip3 = await asyncio.to_thread(run, "api")  # scale up: the start event re-lists
        await eventually(lambda: (ip3, 8000) in available(pool), 30, what="the new container")
        await asyncio.to_thread(first.stop, timeout=0)  # a replica dies
        await eventually(lambda: (ip1, 8000) not in pool.backends, 30, what="the stopped container to go")
        assert available(pool) == {(ip2, 8000), (ip3, 8000)}
        # Found by its die/stop event, not by a re-list after the events stream broke: there is no polling,
        # so without the event it would never have gone. (Told apart by events, not by how long it took.)
        assert discovery.failures == 0 and discovery.error is None

    run_with(discovery, pool, scenario)
    described = discovery.describe()
    assert described["kind"] == "docker" and described["service"] == "api" and described["project"] == project
    # Cancelled: the events thread ended with it (its stream was closed).
    wait_until(
        lambda: "docker-events-api" not in {t.name for t in threading.enumerate()} - threads_before,
        5,
        what="the events thread to end",
    )


def test_a_stop_landing_as_a_look_up_ends_still_ends_dns_discovery():
    """Python 3.11's asyncio.wait_for (dnspython's, for each DNS query) returns the answer and drops a cancel that
    arrives in the same loop turn as the answer; discovery must end all the same. The resolver below makes that
    turn happen every time: the answer and the cancel land together."""
    pool = Pool("api")
    discovery = DnsDiscovery("api", 8000, interval=0.05, nameserver="127.0.0.1:9")

    async def resolve(name: str, rdtype: str) -> object:
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        task = asyncio.current_task()
        assert task is not None

        def land() -> None:
            answer.set_result(None)
            task.cancel()

        loop.call_soon(land)
        await asyncio.wait_for(answer, 5)  # swallows the cancel on 3.11
        raise dns.resolver.NoAnswer

    discovery.resolver.resolve = resolve  # type: ignore[method-assign]

    async def main() -> asyncio.Task[None]:
        task = asyncio.create_task(discovery.run(pool))
        await asyncio.wait({task}, timeout=2)
        if not task.done():  # the cancel was lost: end the loop for good before failing
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            pytest.fail("DNS discovery kept running after its cancellation")
        return task

    assert asyncio.run(main()).cancelled()
