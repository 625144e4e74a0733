"""Rate limits: token buckets in Redis, so a limit holds across every api process.

A bucket holds up to ``capacity`` tokens and refills ``capacity`` per ``per_s``
seconds; each request spends one, and with none left it is refused with the time until
the next token (HTTP 429 + ``Retry-After``). One Lua script reads, refills, spends and
sets the bucket's expiry: one round trip, atomic, timed by the Redis server's clock so
api processes on different machines agree.

A request may carry a *dedupe* key (a trip request's ``Idempotency-Key``): a retry of
a request that was already charged is free, so a phone retrying over a bad network is
never limited for asking twice for the same thing.

When Redis cannot be reached the limiter lets the request through (and logs it): an
outage of the live store must not also stop sign-ups and quotes, and the limits are
about abuse over minutes, not about any one request.

The driver's location frames are limited inside the location script itself
(``dispatch.presence``), which the ingest path runs anyway. ``docs/security.md``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import RateLimited
from core.keys import Keys

log = logging.getLogger(__name__)

# Long enough to cover any retry of one request (a phone gives up within minutes).
DEDUPE_TTL_S = 24 * 3600

# KEYS: bucket hash [, dedupe marker]. ARGV: capacity, refill per ms, dedupe ttl (s).
# Returns {1, 0} when allowed, {0, ms until a token} when not.
_BUCKET = """
if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap, refill = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(h[1] or ARGV[1])
local at = tonumber(h[2] or now)
if now > at then tokens = math.min(cap, tokens + (now - at) * refill) end
if tokens < 1 then return {0, math.ceil((1 - tokens) / refill)} end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', math.max(now, at))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / refill) + 1000)
if #KEYS > 1 then redis.call('SET', KEYS[2], '1', 'EX', ARGV[3]) end
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Limit:
    """``capacity`` requests per ``per_s`` seconds, in a burst or spread out."""

    bucket: str
    capacity: int
    per_s: float

    @classmethod
    def per_minute(cls, bucket: str, n: int) -> Limit:
        return cls(bucket, n, 60.0)


class RateLimiter:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._script = redis.register_script(_BUCKET)

    async def hit(self, limit: Limit, ident: str, *, dedupe: str | None = None) -> None:
        """Spend one of ``ident``'s tokens for ``limit``, or raise ``RateLimited``."""
        keys = [self._keys.rate(limit.bucket, ident)]
        if dedupe is not None:
            digest = hashlib.sha256(dedupe.encode()).hexdigest()[:32]
            keys.append(self._keys.rate_seen(limit.bucket, ident, digest))
        refill_per_ms = limit.capacity / (limit.per_s * 1000)
        try:
            allowed, wait_ms = await self._script(
                keys=keys, args=[limit.capacity, repr(refill_per_ms), DEDUPE_TTL_S]
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning(
                "rate limit not checked: redis unavailable",
                extra={"bucket": limit.bucket, "error": repr(exc)},
            )
            return
        if not int(allowed):
            retry_after_s = math.ceil(int(wait_ms) / 1000)
            raise RateLimited(
                f"too many {limit.bucket.replace('-', ' ')}: at most {limit.capacity} per "
                f"{limit.per_s:g} s; retry in {retry_after_s} s",
                retry_after_s=retry_after_s,
            )
