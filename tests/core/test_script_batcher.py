"""core.script_batcher.ScriptBatcher against real Redis: one pipeline per event-loop
turn, every waiter hears of a failure, and a script Redis forgot is loaded again."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.exceptions import ResponseError

from core.bulk_redis import BulkScriptRunner, pack
from core.script_batcher import ScriptBatcher
from core.settings import Settings
from tests.fixtures.own_services import OwnRedis

# Adds ARGV[1] to the counter KEYS[1] and returns the new value: each call's reply is
# its own, and the counter says how many calls really ran.
_ADD = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


class CountingRunner(BulkScriptRunner):
    """A runner that records every round trip (the commands it wrote in one go), and
    may run a hook while a round trip is in flight."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.round_trips: list[list[bytes]] = []
        self.in_flight: Callable[[], Awaitable[None]] | None = None

    async def run(self, commands: list[bytes]) -> list[Any]:
        self.round_trips.append(commands)
        hook, self.in_flight = self.in_flight, None
        if hook is not None:
            await hook()
        return await super().run(commands)


@pytest.fixture
def counter(settings: Settings) -> str:
    return f"{settings.redis_prefix}batcher:count"


@pytest.fixture
async def runner(settings: Settings) -> AsyncIterator[CountingRunner]:
    """A counting runner on the shared Redis, with ``_ADD`` already loaded there (so
    the round trips counted are the calls' own)."""
    r = CountingRunner(settings.redis_url)
    await r.run([pack("SCRIPT", "LOAD", _ADD)])
    r.round_trips.clear()
    yield r
    r.close()


async def test_calls_made_in_one_turn_share_one_round_trip(
    runner: CountingRunner, counter: str
) -> None:
    batcher = ScriptBatcher(runner, _ADD)
    results = await asyncio.gather(*(batcher.submit([counter], [n]) for n in range(1, 21)))
    assert len(runner.round_trips) == 1
    assert len(runner.round_trips[0]) == 20
    # Each caller gets its own reply, in the order the calls were made.
    assert results == [n * (n + 1) // 2 for n in range(1, 21)]
    # A lone call goes out at once, on its own.
    assert await batcher.submit([counter], [1]) == 211
    assert [len(r) for r in runner.round_trips] == [20, 1]


async def test_calls_made_while_a_round_trip_is_in_flight_go_in_the_next_one(
    runner: CountingRunner, counter: str
) -> None:
    batcher = ScriptBatcher(runner, _ADD)
    late: list[asyncio.Task[Any]] = []

    async def more_arrive() -> None:
        # Runs inside the first round trip, before its write: these calls start while it
        # is in flight (the tasks run as soon as the round trip waits for Redis).
        late.extend(asyncio.create_task(batcher.submit([counter], [100])) for _ in range(5))

    runner.in_flight = more_arrive
    first = await batcher.submit([counter], [1])
    assert first == 1
    assert [await t for t in late] == [101, 201, 301, 401, 501]
    assert [len(r) for r in runner.round_trips] == [1, 5]


async def test_a_burst_is_sent_in_slices_of_max_batch(runner: CountingRunner, counter: str) -> None:
    batcher = ScriptBatcher(runner, _ADD)
    n = ScriptBatcher.MAX_BATCH * 2 + 7
    results = await asyncio.gather(*(batcher.submit([counter], [1]) for _ in range(n)))
    assert results == list(range(1, n + 1))
    assert [len(r) for r in runner.round_trips] == [
        ScriptBatcher.MAX_BATCH,
        ScriptBatcher.MAX_BATCH,
        7,
    ]


async def test_an_error_reply_fails_only_its_own_call(
    runner: CountingRunner, counter: str, settings: Settings
) -> None:
    batcher = ScriptBatcher(runner, _ADD)
    not_a_number = counter + ":text"
    client = SyncRedis.from_url(settings.redis_url)
    try:
        client.set(not_a_number, "abc")
        outcomes = await asyncio.gather(
            batcher.submit([counter], [1]),
            batcher.submit([not_a_number], [1]),
            batcher.submit([counter], [1]),
            return_exceptions=True,
        )
    finally:
        client.close()
    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], ResponseError)
    assert "not an integer" in str(outcomes[1])
    assert len(runner.round_trips) == 1


async def test_a_script_redis_never_saw_is_loaded_and_the_batch_sent_again(
    runner: CountingRunner, counter: str
) -> None:
    # A script body no Redis has seen (a fresh comment), so the first EVALSHA is refused
    # with NOSCRIPT whatever else shares this Redis.
    script = f"-- {secrets.token_hex(8)}\n{_ADD}"
    batcher = ScriptBatcher(runner, script)
    assert await asyncio.gather(*(batcher.submit([counter], [1]) for _ in range(3))) == [1, 2, 3]
    sent = [b"".join(r) for r in runner.round_trips]
    assert len(sent) == 3  # the batch, SCRIPT LOAD, the batch again
    assert b"SCRIPT" in sent[1] and b"LOAD" in sent[1]
    assert sent[0] == sent[2]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    """A Redis of this test's own: SCRIPT FLUSH would make every other test sharing
    the common one reload its scripts."""
    redis = OwnRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop(kill=True)


async def test_after_script_flush_the_script_is_loaded_again(own_redis: OwnRedis) -> None:
    runner = CountingRunner(own_redis.url)
    batcher = ScriptBatcher(runner, _ADD)
    try:
        assert await batcher.submit(["n"], [1]) == 1
        assert len(runner.round_trips) == 3  # NOSCRIPT on a fresh Redis, load, again
        with own_redis.client() as client:
            assert client.script_exists(batcher.sha) == [True]
            client.script_flush()
            assert client.script_exists(batcher.sha) == [False]
        runner.round_trips.clear()
        assert await asyncio.gather(batcher.submit(["n"], [1]), batcher.submit(["n"], [1])) == [
            2,
            3,
        ]
        assert len(runner.round_trips) == 3
        with own_redis.client() as client:
            assert client.script_exists(batcher.sha) == [True]
            assert client.get("n") == "3"  # each call ran exactly once
    finally:
        runner.close()


async def test_a_failed_round_trip_fails_every_waiter_and_the_next_one_reconnects(
    own_redis: OwnRedis,
) -> None:
    runner = CountingRunner(own_redis.url)
    batcher = ScriptBatcher(runner, _ADD)
    try:
        assert await batcher.submit(["n"], [1]) == 1
        own_redis.stop(kill=True)
        outcomes = await asyncio.gather(
            *(batcher.submit(["n"], [1]) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes
        runner.round_trips.clear()
        # Redis is back (empty, as after a restart): the same batcher reconnects, loads
        # the script again and runs the call once.
        own_redis.start()
        assert await batcher.submit(["n"], [7]) == 7
        assert len(runner.round_trips) == 3
    finally:
        runner.close()
