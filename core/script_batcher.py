"""One Lua script run for many callers, one pipeline per event-loop turn.

The live index's hot paths (a location frame from every connected driver, a dispatch
batch's candidate searches, its reservations) each run one script per call. Sent one at
a time, each call would pay a round trip and redis-py's per-command bookkeeping; here
every call made in the same event-loop turn goes out in one write on a
``core.bulk_redis.BulkScriptRunner`` connection, and each caller awaits its own reply.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.exceptions import ResponseError

from core.bulk_redis import BulkScriptRunner, pack, pack_args, pack_ascii_args, pack_with_tail


class ScriptBatcher:
    """Runs one Lua script for many callers, one pipeline per event-loop turn.

    Each caller awaits its own result; whatever arrived while a pipeline was in flight
    goes in the next one, so batches grow with load and a lone call is sent at once.
    Calls go out as raw ``EVALSHA``; after a Redis restart (or ``SCRIPT FLUSH``) forgot
    the script, the batch is sent once more with the script loaded again. A failed
    round trip fails every call in it; an error reply fails only its own call.
    """

    # One write of at most this many calls: a burst after a stall is sent in slices, so
    # no single reply read holds the connection for long.
    MAX_BATCH = 512

    def __init__(self, runner: BulkScriptRunner, script: str) -> None:
        self._runner = runner
        self._script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._running = False
        # The loop keeps only a weak reference to a task: this one keeps the drain alive.
        self._drainer: asyncio.Task[None] | None = None
        self._heads: dict[tuple[int, int], bytes] = {}

    async def submit(
        self, keys: Sequence[str], args: Sequence[Any], *, tail: tuple[bytes, int] | None = None
    ) -> Any:
        """Run the script with ``keys`` and ``args`` (followed by ``tail``, arguments
        already packed with ``core.bulk_redis.pack_args``, and their count)."""
        if tail is None:
            # EVALSHA, the sha and the key count are the same for every call of this
            # script with as many keys and arguments; only the rest is packed here.
            variable = pack_ascii_args([*keys, *(str(a) for a in args)])
            if variable is None:
                command = pack("EVALSHA", self.sha, len(keys), *keys, *args)
            else:
                command = self.head(len(keys), len(keys) + len(args)) + variable
        else:
            command = pack_with_tail(("EVALSHA", self.sha, len(keys), *keys, *args), *tail)
        return await self.submit_command(command)

    async def submit_command(self, command: bytes) -> Any:
        """Run an ``EVALSHA`` of this script that the caller packed itself (see
        ``head``)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if not self._running:
            self._running = True
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    def head(self, key_count: int, arg_count: int) -> bytes:
        """The packed start of an ``EVALSHA`` of this script with ``key_count`` keys and
        ``arg_count`` keys and arguments in all: append exactly that many packed bulks."""
        head = self._heads.get((key_count, arg_count))
        if head is None:
            head = self._heads[(key_count, arg_count)] = b"*%d\r\n" % (3 + arg_count) + pack_args(
                "EVALSHA", self.sha, key_count
            )
        return head

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.MAX_BATCH]
                del self._pending[: self.MAX_BATCH]
                try:
                    results = await self._run([command for command, _ in batch])
                except Exception as exc:  # every waiter hears of the failure
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(ConnectionError(f"redis: {exc!r}"))
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, hiredis.ReplyError):
                        future.set_exception(ResponseError(str(result)))
                    else:
                        future.set_result(result)
        finally:
            self._running = False

    async def _run(self, commands: list[bytes]) -> list[Any]:
        results = await self._runner.run(commands)
        if any(
            isinstance(r, hiredis.ReplyError) and str(r).startswith("NOSCRIPT") for r in results
        ):
            await self._runner.run([pack("SCRIPT", "LOAD", self._script)])
            results = await self._runner.run(commands)
        return results
