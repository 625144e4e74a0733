"""A person's events to one of their sockets, with resume after a reconnect.

Each event carries ``event_id``. A phone that reconnects passes ``?last_event_id=N`` (or
has acked N with an ``ack`` frame) and first receives every event after N that the
short per-person log still holds, then live ones; an event is never sent twice on one
connection. If the log no longer reaches back to N, the server sends
``{"type": "resync"}`` and the phone refetches its state over HTTP.

Revocation publishes a ``revoked`` control frame on the person's channel, which the
stream acts on (error frame, close) and never forwards. See ``docs/websocket.md``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import orjson
from redis.exceptions import RedisError
from starlette.websockets import WebSocket

from core import metrics
from core.events import REVOKED_PREFIX
from core.hub import RECONNECTED, Subscription
from web.frames import AckFrame
from web.runtime import ApiRuntime

log = logging.getLogger(__name__)

# After the hub reconnected, how soon a socket whose catch-up failed tries again.
CATCH_UP_RETRY_S = 1.0
# A phone can resume from its last ack for this long after it last acked.
ACK_TTL_S = 24 * 3600

_EVENT_ID = re.compile(rb'^\{"event_id":(\d+),')
RESYNC_MISSED = {"type": "resync", "detail": "events were missed; refetch state"}
RESYNC_RESTARTED = {
    "type": "resync",
    "detail": "event ids restarted; refetch state and take the ids that follow",
}

# Remember the highest id acked (never move backwards), for the next connection.
_ACK = (
    "local c = tonumber(redis.call('GET', KEYS[1]) or '-1') "
    "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end"
)


def ack_key(rt: ApiRuntime, audience: str, ident: str) -> str:
    return rt.keys.event_ack(audience, ident)


def _event_id(frame: str) -> int | None:
    m = _EVENT_ID.match(frame.encode()[:32])
    return None if m is None else int(m.group(1))


class EventStream:
    """What one socket has sent of one person's events: the last event id, and the
    frames sent from the log by id (a live copy of one of them, published during a
    replay, is not sent again)."""

    def __init__(
        self, rt: ApiRuntime, ws: WebSocket, *, audience: str, ident: str, token_id: str | None
    ) -> None:
        self.rt = rt
        self.ws = ws
        self.audience = audience
        self.ident = ident
        self.token_id = token_id
        self.last_sent = 0
        self.replayed: dict[int, str] = {}
        self._sent = metrics.SOCKET_FRAMES_SENT.labels(audience)

    async def replay(self) -> None:
        """Send what the phone missed since ``?last_event_id`` (or its last ack)."""
        raw = self.ws.query_params.get("last_event_id")
        if raw is not None and raw.isdigit():
            last = int(raw)
        else:
            stored = await self.rt.redis.get(ack_key(self.rt, self.audience, self.ident))
            last = (
                int(stored)
                if stored
                else await self.rt.bus.current_event_id(self.audience, self.ident)
            )
        frames, complete, base = await self.rt.bus.missed_since(self.audience, self.ident, last)
        if not complete:
            await self._send_json(RESYNC_MISSED)
        self.last_sent = await self._send_logged(frames, after=base)

    async def pump(self, sub: Subscription) -> None:
        """Forward the person's live events until a revocation closes the socket."""
        while True:
            frame = await sub.queue.get()
            if frame == RECONNECTED:
                try:
                    await self._catch_up()
                except (RedisError, OSError) as exc:
                    # Redis is not back after all: try again in a moment (the socket
                    # stays up, as it does for frames that fail).
                    log.warning(
                        "socket catch-up failed; retrying",
                        extra={"error": repr(exc), "audience": self.audience},
                    )
                    asyncio.get_running_loop().call_later(
                        CATCH_UP_RETRY_S, sub.deliver, RECONNECTED
                    )
                continue
            if frame.startswith(REVOKED_PREFIX):
                control = orjson.loads(frame)
                if control["jti"] is None or control["jti"] == self.token_id:
                    await self._send_json(
                        {"type": "error", "code": control["code"], "detail": control["detail"]}
                    )
                    await self.ws.close(int(control["close"]), str(control["code"]))
                    return
                continue
            event_id = _event_id(frame)
            if event_id is not None:
                if event_id <= self.last_sent:
                    if self.replayed.get(event_id) == frame:
                        continue  # published while we replayed: sent already
                    # Not a copy: the sequence restarted (Redis lost it while this socket
                    # stayed open). The phone's ids are void.
                    await self._send_json(RESYNC_RESTARTED)
                self.replayed.clear()
                self.last_sent = event_id
            await self.ws.send_text(frame)
            self._sent.inc()

    async def ack(self, frame: AckFrame) -> None:
        """An ``ack`` frame (its ``event_id`` checked by the model): remember the highest
        event id the phone has, for resume."""
        key = ack_key(self.rt, self.audience, self.ident)
        await self.rt.redis.eval(_ACK, 1, key, frame.event_id, ACK_TTL_S)

    async def _catch_up(self) -> None:
        """The hub's connection to Redis was replaced, and events published meanwhile
        never reached this socket: send them from the event log. Their live copies, if
        any come later, are recognised in ``replayed`` and not sent twice."""
        frames, complete, base = await self.rt.bus.missed_since(
            self.audience, self.ident, self.last_sent
        )
        if base < self.last_sent:
            # Redis lost the sequence (it restarted): the new one starts again from 1.
            await self._send_json(RESYNC_RESTARTED)
            self.last_sent = base
            self.replayed.clear()
        elif not complete:
            await self._send_json(RESYNC_MISSED)
        self.last_sent = await self._send_logged(frames, after=self.last_sent)

    async def _send_logged(self, frames: list[str], *, after: int) -> int:
        """Send the logged frames whose event id is above ``after``, remembering each in
        ``replayed``; the last id sent."""
        last = after
        for frame in frames:
            event_id = _event_id(frame)
            if event_id is None or event_id <= last:
                continue
            last = event_id
            await self.ws.send_text(frame)
            self.replayed[last] = frame
        return last

    async def _send_json(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(orjson.dumps(frame, option=orjson.OPT_UTC_Z).decode())
