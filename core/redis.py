"""The Redis client. One pool per process, strings in and out."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def make_redis(url: str) -> Redis:
    # A short retry rides out a blip; a Redis that stays down surfaces as an error the
    # app maps to 503 instead of hanging a request.
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        max_connections=200,
    )
