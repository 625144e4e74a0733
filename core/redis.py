"""The Redis client. One pool per process, strings in and out."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

# Enough connections for pipelines to overlap; a burst beyond them waits for a free one
# (up to POOL_WAIT_S) instead of failing, which is what thousands of sockets need.
POOL_SIZE = 64
POOL_WAIT_S = 5.0


def make_redis(url: str, *, retries: int = 2) -> Redis:
    """The client; ``retries=0`` for a connection whose owner must see every failure
    (the hub's pub/sub: a silent reconnect would hide the events lost meanwhile)."""
    # A short retry rides out a blip; a Redis that stays down surfaces as an error the
    # app maps to 503 (HTTP) or a `service-unavailable` error frame (sockets). The Retry
    # must be the asyncio one: the sync class, given an async client, never catches the
    # error, so after a Redis restart each pooled connection failed one command.
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=retries),
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
    )
    return Redis(connection_pool=pool)
