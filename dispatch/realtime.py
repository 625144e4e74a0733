"""Socket plumbing shared by the rider and driver sockets.

A socket is two tasks: the *pump* forwards this person's events (from the process's
one Redis subscription, ``core.hub``) to the phone, and the *reader* handles the phone's
frames. When either ends, the other is cancelled.

Resume: each event carries ``event_id``. A phone that reconnects passes
``?last_event_id=N`` (or has acked N with an ``ack`` frame) and first receives every
event after N that the short per-person log still holds, then live ones; an event is
never sent twice on one connection. If the log no longer reaches back to N, the server
sends ``{"type": "resync"}`` and the phone refetches its state over HTTP.

Close codes: 4401 bad, missing, expired or revoked credentials, 4403 wrong role or
removed member, 1013 (try again later) when the phone fell too far behind, 1009 for an
oversized frame. A socket is closed when its token expires (4401 ``token-expired``), and
at once when its token is revoked (4401 ``token-revoked``) or its member suspended or
removed (4403 ``member-removed``), whichever api process holds it: revocation publishes
a ``revoked`` control frame on the person's channel, which the pump acts on and never
forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core import identity, metrics
from core.auth import Principal, Role, authenticate, bearer_from_header
from core.db import is_data_error
from core.errors import (
    CoopError,
    Forbidden,
    InvalidFrame,
    MemberNotFound,
    MemberRemoved,
    NotAuthenticated,
    RateLimited,
    TokenExpired,
    Unavailable,
)
from core.events import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED, REVOKED_PREFIX
from core.hub import RECONNECTED
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)

# Larger than any frame the contract defines (a location frame is ~150 bytes); a bigger
# one is a broken or hostile client.
MAX_FRAME_BYTES = 16 * 1024
CLOSE_TRY_AGAIN = 1013
# After the hub reconnected, how soon a socket whose catch-up failed tries again.
CATCH_UP_RETRY_S = 1.0
CLOSE_TOO_BIG = 1009

_EVENT_ID = re.compile(rb'^\{"event_id":(\d+),')
RESYNC_MISSED = {"type": "resync", "detail": "events were missed; refetch state"}
RESYNC_RESTARTED = {
    "type": "resync",
    "detail": "event ids restarted; refetch state and take the ids that follow",
}


def ack_key(rt: Runtime, audience: str, ident: str) -> str:
    return rt.keys.event_ack(audience, ident)


def error_frame(exc: CoopError, ref: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": exc.slug, "detail": exc.detail}
    if isinstance(exc, RateLimited):
        frame["retry_after_s"] = exc.retry_after_s
    if ref is not None:
        frame["ref"] = ref
    return frame


async def send(ws: WebSocket, frame: dict[str, Any] | str) -> None:
    text = frame if isinstance(frame, str) else orjson.dumps(frame).decode()
    await ws.send_text(text)


async def authenticate_socket(rt: Runtime, ws: WebSocket, role: Role) -> Principal | None:
    """Accept the socket and say who is on it; on failure send an ``error`` frame and
    close with 4401/4403, returning None."""
    token = bearer_from_header(ws.headers.get("authorization")) or ws.query_params.get("token")
    await ws.accept()
    try:
        who = authenticate(
            token, secret=rt.settings.jwt_secret, operator_token=rt.settings.operator_token
        )
        who.require(role)
        async with rt.sessions() as db:
            await identity.check_standing(db, who)
        return who
    except (MemberRemoved, MemberNotFound) as exc:
        await send(ws, error_frame(exc))
        await ws.close(CLOSE_FORBIDDEN, exc.slug)
    except NotAuthenticated as exc:
        await send(ws, error_frame(exc))
        await ws.close(CLOSE_UNAUTHENTICATED, exc.slug)
    except Forbidden as exc:
        await send(ws, error_frame(exc))
        await ws.close(CLOSE_FORBIDDEN, exc.slug)
    return None


def parse_frame(text: str | bytes) -> dict[str, Any]:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidFrame("frames must be JSON objects") from exc
    if not isinstance(frame, dict):
        raise InvalidFrame("frames must be JSON objects")
    if not isinstance(frame.get("type"), str):
        raise InvalidFrame("a frame needs a string 'type'")
    return frame


Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def serve_socket(
    rt: Runtime,
    ws: WebSocket,
    *,
    audience: str,
    who: Principal,
    handle: Handler,
) -> None:
    """Run the pump and the reader until the phone leaves or a task fails."""
    ident = who.subject_id
    channel = rt.keys.channel(audience, ident)
    metrics.SOCKETS_CONNECTED.labels(audience).inc()
    metrics.SOCKET_CONNECTIONS.labels(audience).inc()
    sent_counter = metrics.SOCKET_FRAMES_SENT.labels(audience)
    try:
        async with rt.hub.subscribe(channel) as sub:
            last_sent, replayed = await _replay(rt, ws, audience=audience, ident=ident)

            async def pump() -> None:
                nonlocal last_sent
                while True:
                    frame = await sub.queue.get()
                    if frame == RECONNECTED:
                        try:
                            last_sent = await _catch_up(
                                rt,
                                ws,
                                audience=audience,
                                ident=ident,
                                last_sent=last_sent,
                                replayed=replayed,
                            )
                        except (RedisError, OSError) as exc:
                            # Redis is not back after all: try again in a moment (the
                            # socket stays up, as it does for frames that fail).
                            log.warning(
                                "socket catch-up failed; retrying",
                                extra={"error": repr(exc), "audience": audience},
                            )
                            asyncio.get_running_loop().call_later(
                                CATCH_UP_RETRY_S, sub.deliver, RECONNECTED
                            )
                        continue
                    if frame.startswith(REVOKED_PREFIX):
                        control = orjson.loads(frame)
                        if control["jti"] is None or control["jti"] == who.token_id:
                            await send(
                                ws,
                                {
                                    "type": "error",
                                    "code": control["code"],
                                    "detail": control["detail"],
                                },
                            )
                            await ws.close(int(control["close"]), str(control["code"]))
                            return
                        continue
                    m = _EVENT_ID.match(frame.encode()[:32])
                    if m is not None:
                        event_id = int(m.group(1))
                        if event_id <= last_sent:
                            if replayed.get(event_id) == frame:
                                continue  # published while we replayed: sent already
                            # Not a copy: the sequence restarted (Redis lost it while
                            # this socket stayed open). The phone's ids are void.
                            await send(ws, RESYNC_RESTARTED)
                        replayed.clear()
                        last_sent = event_id
                    await ws.send_text(frame)
                    sent_counter.inc()

            async def overflow() -> None:
                await sub.overflowed.wait()
                await ws.close(CLOSE_TRY_AGAIN, "too far behind; reconnect and resume")

            async def reader() -> None:
                await _read(rt, ws, audience=audience, ident=ident, handle=handle)

            async def expiry() -> None:
                # The token's lifetime bounds the socket's: a socket never outlives the
                # credentials it was opened with.
                if who.expires_at is None:
                    await asyncio.Event().wait()
                    return
                await asyncio.sleep(max(0.0, who.expires_at - time.time()))
                exc = TokenExpired("the token expired; reconnect with a fresh one")
                await send(ws, error_frame(exc))
                await ws.close(CLOSE_UNAUTHENTICATED, exc.slug)

            tasks = [asyncio.create_task(t()) for t in (pump, overflow, reader, expiry)]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in tasks:
                    t.cancel()
                for t in tasks:
                    with contextlib.suppress(
                        asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
                    ):
                        await t
    finally:
        metrics.SOCKETS_CONNECTED.labels(audience).dec()
        if ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await ws.close()


async def _replay(
    rt: Runtime, ws: WebSocket, *, audience: str, ident: str
) -> tuple[int, dict[int, str]]:
    """Send what the phone missed; the last event id sent, and the frames sent by id
    (a live copy of one of them, published during the replay, is not sent again)."""
    raw = ws.query_params.get("last_event_id")
    if raw is not None and raw.isdigit():
        last = int(raw)
    else:
        stored = await rt.redis.get(ack_key(rt, audience, ident))
        last = int(stored) if stored else await rt.bus.current_event_id(audience, ident)
    frames, complete, base = await rt.bus.missed_since(audience, ident, last)
    if not complete:
        await send(ws, RESYNC_MISSED)
    replayed: dict[int, str] = {}
    return await _send_logged(ws, frames, after=base, replayed=replayed), replayed


async def _catch_up(
    rt: Runtime,
    ws: WebSocket,
    *,
    audience: str,
    ident: str,
    last_sent: int,
    replayed: dict[int, str],
) -> int:
    """The hub's connection to Redis was replaced, and events published meanwhile never
    reached this socket: send them from the event log. Their live copies, if any come
    later, are recognised in ``replayed`` and not sent twice. Returns the last id sent."""
    frames, complete, base = await rt.bus.missed_since(audience, ident, last_sent)
    if base < last_sent:
        # Redis lost the sequence (it restarted): the new one starts again from 1.
        await send(ws, RESYNC_RESTARTED)
        last_sent = base
        replayed.clear()
    elif not complete:
        await send(ws, RESYNC_MISSED)
    return await _send_logged(ws, frames, after=last_sent, replayed=replayed)


async def _send_logged(
    ws: WebSocket, frames: list[str], *, after: int, replayed: dict[int, str]
) -> int:
    """Send the logged frames whose event id is above ``after``, remembering each in
    ``replayed`` (so its live copy is not sent again); the last id sent."""
    last = after
    for frame in frames:
        m = _EVENT_ID.match(frame.encode()[:32])
        if m is None or int(m.group(1)) <= last:
            continue
        last = int(m.group(1))
        await ws.send_text(frame)
        replayed[last] = frame
    return last


async def _read(rt: Runtime, ws: WebSocket, *, audience: str, ident: str, handle: Handler) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes")
        if data is None:
            continue
        if len(data) > MAX_FRAME_BYTES:
            metrics.SOCKET_ERRORS.labels(audience, "frame-too-large").inc()
            await ws.close(CLOSE_TOO_BIG, "frame too large")
            return
        ref = None
        started = time.perf_counter()
        try:
            frame = parse_frame(data)
            ref = frame.get("id")
            counter, timer = _frame_metrics(audience, frame["type"])
            counter.inc()
            if frame["type"] == "ack":
                await _ack(rt, audience, ident, frame)
                reply = None
            else:
                reply = await handle(frame)
            timer.observe(time.perf_counter() - started)
        except CoopError as exc:
            metrics.SOCKET_ERRORS.labels(audience, exc.slug).inc()
            await send(ws, error_frame(exc, ref))
            continue
        except (RedisError, SQLAlchemyError, OSError) as exc:
            if is_data_error(exc):
                # A value PostgreSQL cannot hold (as over HTTP: invalid input).
                bad = InvalidFrame("a value in this frame is not acceptable")
                metrics.SOCKET_ERRORS.labels(audience, bad.slug).inc()
                await send(ws, error_frame(bad, ref))
                continue
            # A backing service failed this frame; the socket stays up for the next one.
            log.warning("socket frame failed", extra={"error": repr(exc), "audience": audience})
            metrics.SOCKET_ERRORS.labels(audience, "service-unavailable").inc()
            await send(ws, error_frame(Unavailable("try again shortly"), ref))
            continue
        if reply is not None:
            if ref is not None:
                reply["ref"] = ref
            await send(ws, reply)
        elif ref is not None:
            await send(ws, {"type": "ok", "ref": ref})


KNOWN_TYPES = frozenset({"status", "location", "accept", "decline", "ack"})
_FRAME_METRICS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _frame_metrics(audience: str, frame_type: str) -> tuple[Any, Any]:
    """The labelled counter and latency children, looked up once per (audience, type),
    not per frame."""
    label = _type_label(frame_type)
    children = _FRAME_METRICS.get((audience, label))
    if children is None:
        children = _FRAME_METRICS[(audience, label)] = (
            metrics.SOCKET_FRAMES.labels(audience, label),
            metrics.SOCKET_FRAME_SECONDS.labels(audience, label),
        )
    return children


def _type_label(frame_type: str) -> str:
    return frame_type if frame_type in KNOWN_TYPES else "other"


async def _ack(rt: Runtime, audience: str, ident: str, frame: dict[str, Any]) -> None:
    event_id = frame.get("event_id")
    if isinstance(event_id, bool) or not isinstance(event_id, int) or event_id < 0:
        raise InvalidFrame("ack needs a non-negative integer event_id")
    # Remember the highest id acked (never move backwards), for the next connection.
    key = ack_key(rt, audience, ident)
    await rt.redis.eval(
        "local c = tonumber(redis.call('GET', KEYS[1]) or '-1') "
        "if tonumber(ARGV[1]) > c then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end",
        1,
        key,
        event_id,
        24 * 3600,
    )
