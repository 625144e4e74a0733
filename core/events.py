"""Events to sockets, published after the commit that caused them.

Each recipient (a rider or a driver) has its own increasing ``event_id`` sequence and a
short log of recent events, so a phone that reconnects says the last id it saw and gets
what it missed (the zulip event-queue model). One Lua script numbers the event, appends
it to the log and publishes it: one round trip, and the id on the wire is the id in the
log. Ephemeral frames (a driver's position streamed to the rider) skip the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from redis.asyncio import Redis

from core.keys import Keys

Audience = Literal["rider", "driver", "operator"]

# A day of a phone's events at most: enough to resume after a tunnel or a dead battery;
# a client further behind refetches its state over HTTP instead.
EVENT_LOG_MAXLEN = 500
EVENT_LOG_TTL_S = 24 * 3600

_EMIT = """
local n = redis.call('INCR', KEYS[1])
local frame = '{"event_id":' .. n .. ',' .. string.sub(ARGV[1], 2)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], n .. '-1', 'f', frame)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], frame)
return n
"""


# Close codes a revocation asks the person's sockets to close with (docs/websocket.md).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
# A control frame on a person's channel, never forwarded to the phone: their token or
# standing was revoked. Sockets match it by this prefix, so ordinary events cost nothing.
REVOKED_PREFIX = '{"type":"revoked"'


@dataclass(frozen=True, slots=True)
class Event:
    audience: Audience
    recipient_id: str
    frame: dict[str, Any]
    durable: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


def encode(frame: dict[str, Any]) -> str:
    """A frame as JSON text; a datetime in it is written in UTC with ``Z``, as HTTP
    writes it (``core.clock.iso``)."""
    return orjson.dumps(frame, option=orjson.OPT_UTC_Z).decode()


class EventBus:
    """Publishes events; shared by the api processes and the dispatcher."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._emit = redis.register_script(_EMIT)

    def _keys_for(self, audience: str, recipient_id: str) -> list[str]:
        return [
            self._keys.event_seq(audience, recipient_id),
            self._keys.event_log(audience, recipient_id),
            self._keys.channel(audience, recipient_id),
        ]

    async def publish(self, events: list[Event]) -> list[int | None]:
        """Publish in order, in one round trip; returns each durable event's id."""
        if not events:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                payload = encode(event.frame)
                if event.durable:
                    await self._emit(
                        keys=self._keys_for(event.audience, event.recipient_id),
                        args=[payload, EVENT_LOG_MAXLEN, EVENT_LOG_TTL_S],
                        client=pipe,
                    )
                else:
                    pipe.publish(self._keys.channel(event.audience, event.recipient_id), payload)
            results = await pipe.execute()
        return [int(r) if e.durable else None for e, r in zip(events, results, strict=True)]

    async def missed_since(
        self, audience: str, recipient_id: str, last_event_id: int
    ) -> tuple[list[str], bool, int]:
        """What a client that saw up to ``last_event_id`` has missed.

        Returns the frames to send, whether they are everything it missed (False: it
        must refetch its state over HTTP), and the event id the frames continue from.
        The sequence restarts when Redis loses it (a restart, or a day without events);
        a client holding an id from before sees ``last_event_id`` above the current one
        and gets every logged event of the new sequence, continuing from 0."""
        log = self._keys.event_log(audience, recipient_id)
        current = await self.current_event_id(audience, recipient_id)
        if last_event_id > current:
            last_event_id, restarted = 0, True
        else:
            restarted = False
        entries = await self._redis.xrange(log, min=f"({last_event_id}-1", max="+") or []
        frames = [str(fields["f"]) for _id, fields in entries if fields]
        first = await self._redis.xrange(log, min="-", max="+", count=1) or []
        if first:
            first_id = int(str(first[0][0]).split("-")[0])
            complete = first_id <= last_event_id + 1
        else:
            complete = current == last_event_id
        return frames, complete and not restarted, last_event_id

    async def current_event_id(self, audience: str, recipient_id: str) -> int:
        value = await self._redis.get(self._keys.event_seq(audience, recipient_id))
        return int(value) if value else 0


def revoked(
    audience: Audience, recipient_id: str, *, code: str, detail: str, close: int, jti: str | None
) -> Event:
    """Every socket of this person, on any api process, sends ``error`` ``code`` and closes
    with ``close``; with a ``jti``, only the sockets opened with that token."""
    frame = {"type": "revoked", "code": code, "detail": detail, "close": close, "jti": jti}
    return Event(audience, recipient_id, frame, durable=False)
