"""Moving a country's users to another shard, online (``scalecube shard move FR shard-b``).

Reads are served throughout and no user is lost or duplicated (by id), under concurrent
creates and reads, without trusting any router's cached map. The steps:

1. **Claim.** Record ``FR: shard-a -> shard-b, phase copying`` in ``router:moves`` (``HSETNX``:
   one move per country at a time). Lift any fence ``FR`` still has on the target (left by
   an earlier move away from it). The source stays the owner: routers keep reading from and
   writing to it, and every write there takes the next number of the source's write sequence.
2. **Copy.** Walk the source's ``FR`` users in write-sequence order, in batches, upserting
   each batch on the target (idempotent: a user copied twice is one user).
3. **Catch up.** Walk again from where the copy ended: exactly the writes made meanwhile.
   Repeat while rounds keep finding work (each is shorter than the last).
4. **Flip** — the only pause, and only for ``FR``'s writes:
   a. fence ``FR`` *frozen* on the source: its write script refuses ``FR`` from now on, so
      every ``FR`` write either committed before the fence or is refused (409);
   b. final catch-up: now complete, since nothing can commit after it;
   c. atomically (one Lua script, a compare-and-set on the move record): the override
      ``FR -> shard-b`` and phase "cleaning".
   A router refused in (a)-(c) re-reads the map and retries, so the client sees its write
   take a few milliseconds longer (the pause is measured: ``pause_ms``), not an error. Reads
   never pause: before (c) the source has every user, after (c) the target has.
5. **Clean up.** Fence ``FR`` *moved* on the source (its listings now refuse ``FR`` so a
   router with a map older than the flip re-reads it), wait out the routers' map cache
   (``grace``), then delete the source's ``FR`` users in batches. Drop the move record.

Failure analysis — the move can stop anywhere (this process killed, a shard or Redis down):

- Before the flip the source is the owner and holds every user; the target holds copies
  nobody reads (``GET /shards`` lists them as ``not_owned``). Running the same command again
  resumes: it copies again (idempotent upserts) and carries on. If the process dies between
  4a and 4c, the country's writes wait (then 503 ``country_moving`` after ``MOVE_WAIT_SECONDS``)
  until the move is resumed or aborted; resuming keeps the fence, copies everything again
  under it (a longer pause, this once) and flips. A move that fails *without* dying (an
  error, Ctrl-C) lifts its own fence on the way out, unless the flip may have happened.
- The flip is atomic: the map names the source or the target, never neither.
- After the flip the target has every user. Resuming from "cleaning" finishes the deletion;
  until then the source holds stale copies that no reader is sent to (and if one is, the
  router's 404-then-fresh-map retry finds the user on the target).
- ``--abort`` (before the flip only): drop the record, fence the target and delete its
  copies, lift the source's fence. After the flip, move the country back instead.
- Every change of the move record is a compare-and-set on the run's token and phase, so an
  aborted run, or one a resumed run took over, can neither flip the map nor re-open the
  source. One mover per country at a time: the record names it (``by``), and a second run
  takes the move over rather than joining it — do not start one while the first still runs.

Counts: before the move, ``count(source, FR) = n``; after it, ``count(target, FR) = n + the
FR users created meanwhile`` and ``count(source, FR) = 0``: the report shows both sides.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from services.router.shard_map import MapStore, Move
from services.router.shards import CountryFenced, ShardClient

log = logging.getLogger("scalecube.router.move")

MAX_CATCH_UP_ROUNDS = 10


class MoveError(Exception):
    """The move cannot go on; the message says why and what to do."""


@dataclass
class MoveReport:
    country: str
    source: str
    target: str
    resumed_from: str | None = None
    copied: int = 0  # users upserted on the target by the first pass
    caught_up: int = 0  # by the catch-up rounds, the final one included
    catch_up_rounds: int = 0
    pause_ms: float = 0.0  # the country's writes were refused for this long (fence -> flip)
    deleted: int = 0  # users deleted from the source
    source_before: int | None = None
    source_after: int | None = None
    target_before: int | None = None
    target_after: int | None = None
    seconds: float = 0.0
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShardMover:
    def __init__(
        self,
        store: MapStore,
        shards: ShardClient,
        *,
        batch: int = 500,
        throttle: float = 0.0,
        grace: float = 1.5,
        say: Callable[[str], None] | None = None,
    ) -> None:
        """``throttle``: seconds between copy batches (spare the source); ``grace``: seconds between
        the flip and deleting from the source — longer than the routers' ``MAP_CACHE_SECONDS``."""
        self.store = store
        self.shards = shards
        self.batch = batch
        self.throttle = throttle
        self.grace = grace
        self.say = say or log.info

    async def move(self, country: str, target: str) -> MoveReport:
        started = time.monotonic()
        shard_map = await self.store.read()
        if target not in shard_map.shards:
            raise MoveError(f"no shard named {target!r} (the map has {', '.join(shard_map.shards)})")
        existing = shard_map.moves.get(country)
        if existing is not None:
            if existing.target != target:
                raise MoveError(
                    f"{country} is already moving {existing.source} -> {existing.target} (phase "
                    f"{existing.phase}, by {existing.by}); finish it (same command) or abort it "
                    "(--abort)"
                )
            move = existing.but(token=_token(), by=_me())  # take the record over: the old run, if alive, stops
            if not await self.store.transition(country, existing, move):
                raise MoveError(f"the move of {country} changed while resuming it; run the command again")
        else:
            source = shard_map.owner(country)
            if source == target:
                report = MoveReport(country, source, target)
                self._step(report, f"{country} is already on {target}: nothing to do")
                return report
            move = Move(source, target, "copying", _token(), time.time(), _me())
            raced = await self.store.claim(country, move)
            if raced is not None:
                raise MoveError(f"another move of {country} ({raced.source} -> {raced.target}) started just now")
        report = MoveReport(country, move.source, move.target, resumed_from=existing.phase if existing else None)
        await self._count(report, "before")

        if move.phase == "copying":
            move = await self._copy_and_flip(country, move, report)
        elif move.phase == "flipping":
            # Stopped between the fence and the flip. The source stays fenced (re-opening it could race
            # a mover still alive): copy everything again under the fence, then flip.
            self._step(report, f"resuming a move stopped mid-flip: {country} writes stay paused during a full copy")
            await self.shards.unfence(move.target, country)
            move = await self._fence_and_flip(country, move, report, after=0)
        await self._clean_up(country, move, report, wait=report.resumed_from != "cleaning")
        await self._count(report, "after")
        report.seconds = round(time.monotonic() - started, 3)
        self._step(
            report,
            f"done in {report.seconds:.1f}s: {country} on {move.target} has {report.target_after} users, "
            f"{move.source} has {report.source_after}",
        )
        return report

    async def abort(self, country: str) -> str:
        """Undo a move that has not flipped: the source keeps the country, the target's copies go."""
        move = (await self.store.read()).moves.get(country)
        if move is None:
            return f"no move of {country} under way"
        if move.phase == "cleaning":
            raise MoveError(
                f"{country} already flipped to {move.target}: finish the move (same command), "
                f"then move it back to {move.source} if needed"
            )
        if not await self.store.transition(country, move, None):
            raise MoveError(f"the move of {country} changed while aborting it; run the command again")
        # Fence the target before emptying it: a mover still running can add no copy after this.
        await self.shards.fence(move.target, country, "moved")
        deleted = await self._delete_all(move.target, country)
        await self.shards.unfence(move.source, country)
        return (
            f"aborted {country} {move.source} -> {move.target}: {move.source} keeps it; "
            f"{deleted} copies removed from {move.target}"
        )

    # -- steps ---------------------------------------------------------------------

    async def _copy_and_flip(self, country: str, move: Move, report: MoveReport) -> Move:
        await self.shards.unfence(move.target, country)
        cursor, report.copied = await self._copy(move, country, after=0)
        self._step(report, f"copied {report.copied} {country} users {move.source} -> {move.target}")
        for _ in range(MAX_CATCH_UP_ROUNDS):
            cursor, copied = await self._copy(move, country, after=cursor)
            report.caught_up += copied
            report.catch_up_rounds += 1
            if copied <= max(1, self.batch // 10):
                break
        self._step(report, f"caught up {report.caught_up} users written meanwhile ({report.catch_up_rounds} rounds)")
        flipping = move.but(phase="flipping")
        if not await self.store.transition(country, move, flipping):
            raise MoveError(f"the move of {country} was aborted or taken over by another run; stopping")
        return await self._fence_and_flip(country, flipping, report, after=cursor)

    async def _fence_and_flip(self, country: str, flipping: Move, report: MoveReport, *, after: int) -> Move:
        """Fence the source, copy what is left after ``after``, flip: the country's writes pause meanwhile."""
        paused = time.monotonic()
        await self.shards.fence(flipping.source, country, "frozen")
        cleaning = flipping.but(phase="cleaning")
        try:
            _, copied = await self._copy(flipping, country, after=after, throttle=False)
            report.caught_up += copied
            if not await self.store.transition(country, flipping, cleaning, flip=True):
                raise MoveError(f"the move of {country} was aborted or taken over by another run; stopping")
        except BaseException:
            await asyncio.shield(self._reopen_unless_flipped(country, flipping))
            raise
        report.pause_ms = round((time.monotonic() - paused) * 1000, 1)
        self._step(
            report,
            f"flipped {country} to {flipping.target} (writes paused {report.pause_ms:.0f} ms; the "
            f"final catch-up copied {copied})",
        )
        return cleaning

    async def _reopen_unless_flipped(self, country: str, flipping: Move) -> None:
        """Interrupted around the flip: if the map still names the source and the record is still
        ours, let the source take the country's writes again. Otherwise the fence stays: re-opening
        a source that is no longer the owner (or that another run now fences) would lose writes."""
        try:
            if (await self.store.read()).owner(country) != flipping.source:
                return
            if await self.store.transition(country, flipping, flipping.but(phase="copying")):
                await self.shards.unfence(flipping.source, country)
                log.warning("move of %s interrupted before the flip: writes re-opened on %s", country, flipping.source)
        except Exception as exc:  # resuming (same command) or --abort lifts it
            log.error(
                "move of %s interrupted; %s may still fence it until the move is resumed or aborted: %s",
                country,
                flipping.source,
                exc,
            )

    async def _copy(self, move: Move, country: str, *, after: int, throttle: bool = True) -> tuple[int, int]:
        """Upsert on the target every user the source wrote after sequence ``after``:
        ``(last sequence seen, users copied)``."""
        copied = 0
        while True:
            page = await self.shards.export(move.source, country, after=after, limit=self.batch)
            if page.users:
                try:
                    await self.shards.import_users(move.target, page.users)
                except CountryFenced as exc:
                    raise MoveError(
                        f"{move.target} refuses {country} writes ({exc.state}): the move was aborted, "
                        "or another one fenced it; check `GET /shards`"
                    ) from None
                copied += len(page.users)
            if page.last is not None:
                after = page.last
            if not page.more:
                return after, copied
            if throttle and self.throttle:
                await asyncio.sleep(self.throttle)

    async def _clean_up(self, country: str, cleaning: Move, report: MoveReport, *, wait: bool) -> None:
        await self.shards.fence(cleaning.source, country, "moved")
        if wait and self.grace:
            self._step(report, f"waiting {self.grace:g}s for every router to see the new map")
            await asyncio.sleep(self.grace)
        report.deleted = await self._delete_all(cleaning.source, country)
        if not await self.store.transition(country, cleaning, None):
            log.warning("the record of the move of %s changed during its clean-up (another run?)", country)
        self._step(report, f"deleted {report.deleted} {country} users from {cleaning.source}")

    async def _delete_all(self, shard: str, country: str) -> int:
        deleted = 0
        while True:
            count, remaining = await self.shards.delete_users(shard, country, limit=self.batch)
            deleted += count
            if remaining == 0:
                return deleted
            if self.throttle:
                await asyncio.sleep(self.throttle)

    async def _count(self, report: MoveReport, when: str) -> None:
        source, target = await asyncio.gather(self.shards.stats(report.source), self.shards.stats(report.target))
        setattr(report, f"source_{when}", source["per_country"].get(report.country, 0))
        setattr(report, f"target_{when}", target["per_country"].get(report.country, 0))

    def _step(self, report: MoveReport, message: str) -> None:
        report.steps.append(message)
        self.say(message)


def _token() -> str:
    return secrets.token_hex(8)


def _me() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


async def run_move(
    country: str,
    target: str | None,
    *,
    router_redis_url: str,
    shard_map: str,
    shard_urls: str,
    redis_password: str | None = None,
    abort: bool = False,
    batch: int = 500,
    throttle: float = 0.0,
    grace: float = 1.5,
    say: Callable[[str], None] | None = None,
) -> MoveReport | str:
    """What ``scalecube shard move`` runs: build the pieces from the router's settings, move (or abort)."""
    from services.router.shard_map import check_urls, load_base_map, parse_shard_urls
    from services.shard.model import normalise_country
    from shared_cache.connection import RedisConnector

    try:
        code = normalise_country(country)
    except ValueError as exc:
        raise MoveError(f"country {country!r}: {exc}") from None
    base = load_base_map(shard_map)
    urls = parse_shard_urls(shard_urls)
    check_urls(base, urls)
    connector = RedisConnector(router_redis_url, password=redis_password, op_timeout=5.0)
    shards = ShardClient(urls, timeout=30.0, connect_timeout=2.0)
    mover = ShardMover(MapStore(connector, base), shards, batch=batch, throttle=throttle, grace=grace, say=say)
    try:
        if abort:
            return await mover.abort(code)
        if target is None:
            raise MoveError("which shard? `scalecube shard move COUNTRY SHARD`")
        return await mover.move(code, target)
    finally:
        await shards.close()
        await connector.close()
