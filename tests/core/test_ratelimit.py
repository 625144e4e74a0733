"""core.ratelimit against real Redis: buckets, refill, dedupe, isolation, and what
happens when Redis is not there."""

from __future__ import annotations

import socket

import pytest
from redis.asyncio import Redis

from core.errors import RateLimited
from core.keys import Keys
from core.ratelimit import Limit, RateLimiter
from dispatch.runtime import Runtime


def limiter(rt: Runtime) -> RateLimiter:
    return RateLimiter(rt.redis, rt.keys)


async def test_a_bucket_gives_its_burst_then_refuses_with_the_wait(runtime: Runtime) -> None:
    limit = Limit("things", 3, 60.0)  # 3 a minute: one back every 20 s
    for _ in range(3):
        await limiter(runtime).hit(limit, "alice")
    with pytest.raises(RateLimited) as info:
        await limiter(runtime).hit(limit, "alice")
    assert 1 <= info.value.retry_after_s <= 20
    assert info.value.slug == "rate-limited"
    # Someone else, and another bucket, are not affected.
    await limiter(runtime).hit(limit, "bob")
    await limiter(runtime).hit(Limit("other-things", 1, 60.0), "alice")


async def test_a_bucket_refills(runtime: Runtime) -> None:
    limit = Limit("fast", 2, 0.2)  # 2 per 0.2 s: one token every 100 ms
    await limiter(runtime).hit(limit, "alice")
    await limiter(runtime).hit(limit, "alice")
    with pytest.raises(RateLimited):
        await limiter(runtime).hit(limit, "alice")
    key = runtime.keys.rate("fast", "alice")
    assert 0 < await runtime.redis.pttl(key) <= 1200  # the bucket forgets itself
    # Rewind the bucket's clock by a refill period: the next hit succeeds.
    at = int(await runtime.redis.hget(key, "at"))
    await runtime.redis.hset(key, "at", at - 100)
    await limiter(runtime).hit(limit, "alice")


async def test_a_repeated_dedupe_key_is_charged_once(runtime: Runtime) -> None:
    limit = Limit("requests", 2, 60.0)
    for _ in range(10):
        await limiter(runtime).hit(limit, "alice", dedupe="key-1")
    await limiter(runtime).hit(limit, "alice", dedupe="key-2")
    with pytest.raises(RateLimited):
        await limiter(runtime).hit(limit, "alice", dedupe="key-3")
    # A refused key was not remembered: it is still charged (and refused) next time.
    with pytest.raises(RateLimited):
        await limiter(runtime).hit(limit, "alice", dedupe="key-3")
    await limiter(runtime).hit(limit, "alice", dedupe="key-1")


async def test_without_redis_the_limiter_lets_requests_through(runtime: Runtime) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    gone = Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    try:
        unlimited = RateLimiter(gone, Keys("x:"))
        for _ in range(5):
            await unlimited.hit(Limit("things", 1, 60.0), "alice")
    finally:
        await gone.aclose()
