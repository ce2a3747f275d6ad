"""argon2id hashing, off the event loop.

Hashing is deliberately slow CPU work (~20 ms at the default cost). On the event
loop it would stall every other request of the worker, so it runs on a small pool
of threads; argon2's C code releases the GIL, so those threads use other cores
while the loop keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

log = logging.getLogger("scalecube.auth.passwords")


class Passwords:
    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, threads: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self.threads = threads
        # Threads start on first use, so importing the app (the cluster master does) starts none.
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``; None (no such user) never matches.

        An unknown user costs the same argon2 work as a wrong password (a hash of a
        random secret is checked instead), so timing does not tell which it was.
        argon2 compares the digests in constant time.
        """
        if stored_hash is None:
            await self._run(self._check, await self._dummy(), password)
            return False
        return await self._run(self._check, stored_hash, password)

    async def warm_up(self) -> None:
        """Make the dummy hash now, so the first unknown user is not slower than the others."""
        await self._dummy()

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError):
            log.error("a stored password hash is not a valid argon2 hash; treating it as a mismatch")
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))
        return self._dummy_hash

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
