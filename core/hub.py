"""One Redis subscription per process, fanned out to one queue per socket.

Events for a rider or a driver are published on that person's channel by whichever
process produced them (``core.events``); the process that holds the person's socket
is subscribed to that channel and hands each frame to the socket's queue. This is the
encode/broadcaster shape: subscribing is per channel, not per connection, so a process
with 5,000 drivers holds one Redis connection for all of their events.

Pub/sub delivers nothing published while the connection is down. So each time the hub
opens a new connection it hands every subscription ``RECONNECTED``; a socket then fetches
what it missed from the durable event log (``web.event_stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from core.keys import Keys
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# A socket that falls this far behind is closed (1013, try again) and resumes from its
# last acked event_id; better than unbounded memory for one slow phone.
SUBSCRIBER_QUEUE_MAX = 1000

# Put in every subscription's queue after the hub replaced its connection: whatever was
# published in between never arrived. Not JSON, so it is never mistaken for a frame.
RECONNECTED = "\x00hub:reconnected"


async def _close_quietly(pubsub: PubSub) -> None:
    """Close a pubsub connection that may already be broken. (``aclose`` is untyped in
    some redis-py releases and typed in others, hence the ``Any``.)"""
    close: Any = pubsub.aclose
    with contextlib.suppress(RedisError, OSError):
        await close()


class Subscription:
    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[str] = asyncio.Queue(SUBSCRIBER_QUEUE_MAX)
        self.overflowed = asyncio.Event()

    def deliver(self, frame: str) -> None:
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed.set()


class Hub:
    """Owns ``redis`` (closed by ``stop``): a client of its own, without retries, so a
    lost connection always surfaces here and is followed by ``RECONNECTED``."""

    def __init__(self, redis: Redis, control_channel_prefix: str) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        # Subscribed from the start so the pubsub connection always exists and the
        # reader never has to wait for a first socket.
        self._control = Keys(control_channel_prefix).hub_control(uuid.uuid4().hex)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._control)
        self._task = asyncio.create_task(self._read(), name="hub-reader")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._pubsub is not None:
            await _close_quietly(self._pubsub)
        await self._redis.aclose()

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        assert self._pubsub is not None, "Hub.start() was not called"
        sub = Subscription(channel)
        broken = False
        async with self._lock:
            listeners = self._subs.setdefault(channel, set())
            listeners.add(sub)
            if len(listeners) == 1:
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError):
                    broken = True  # the connection died under us: a new one, below
        if broken:
            try:
                await self._resubscribe()
            except BaseException:
                async with self._lock:
                    self._forget(sub)
                raise
        try:
            yield sub
        finally:
            async with self._lock:
                if self._forget(sub):
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(channel)

    def _forget(self, sub: Subscription) -> bool:
        """Drop ``sub``; True when nobody here listens on its channel any more."""
        listeners = self._subs.get(sub.channel, set())
        listeners.discard(sub)
        if listeners:
            return False
        self._subs.pop(sub.channel, None)
        return True

    async def _resubscribe(self) -> None:
        """Replace the pubsub connection; on failure the old one stays for the next try."""
        async with self._lock:
            fresh = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await fresh.subscribe(self._control, *self._subs)
            except BaseException:
                await _close_quietly(fresh)
                raise
            old, self._pubsub = self._pubsub, fresh
            for listeners in self._subs.values():
                for sub in listeners:
                    sub.deliver(RECONNECTED)
        if old is not None:
            await _close_quietly(old)
        log.info("hub: resubscribed", extra={"channels": len(self._subs)})

    async def _read(self) -> None:
        assert self._pubsub is not None
        backoff_s = 0.1
        while True:
            pubsub = self._pubsub
            try:
                message = await pubsub.get_message(timeout=1.0)
                backoff_s = 0.1
            except (RedisError, OSError) as exc:
                if pubsub is not self._pubsub:
                    # A subscribe found the connection broken and replaced it already:
                    # read the new one (replacing it again would drop what it holds).
                    continue
                # The pubsub connection is gone (Redis restarted, or the network
                # dropped): open a new one with every channel a socket here listens on.
                log.warning("hub: redis error, resubscribing", extra={"error": str(exc)})
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 2.0)
                if pubsub is self._pubsub:
                    with contextlib.suppress(RedisError, OSError):
                        await self._resubscribe()
                continue
            if message is None or message.get("type") != "message":
                continue
            for sub in list(self._subs.get(message["channel"], ())):
                sub.deliver(message["data"])
