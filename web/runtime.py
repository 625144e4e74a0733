"""The api process's runtime: the dispatch runtime plus what only its routes and sockets
use.

- ``hub``: the process's one Redis subscription, fanned out to its sockets
  (``core.hub``); a dispatcher-only process has no sockets and no hub.
- ``limits``: the request rate limiter (``core.ratelimit``).

The composition root (``server.app``) creates one and closes it at shutdown; handlers
reach it through ``web.deps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.hub import Hub
from core.ratelimit import RateLimiter
from core.redis import make_redis
from core.settings import Settings
from dispatch.runtime import Runtime


@dataclass
class ApiRuntime(Runtime):
    hub: Hub
    limits: RateLimiter

    @classmethod
    def parts(cls, settings: Settings) -> dict[str, Any]:
        parts = super().parts(settings)
        return {
            **parts,
            # A connection of its own, without retries: the hub reconnects by itself and
            # tells every socket to catch up (``core.hub``).
            "hub": Hub(make_redis(settings.redis_url, retries=0), settings.redis_prefix),
            "limits": RateLimiter(parts["redis"], parts["keys"]),
        }

    async def start(self) -> None:
        await super().start()
        await self.hub.start()

    async def close(self) -> None:
        await self.hub.stop()
        await super().close()
