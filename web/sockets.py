"""The socket loop shared by the rider, driver and operator sockets.

A socket is a few tasks: the *pump* forwards this person's events (from the process's
one Redis subscription, ``core.hub``, through ``web.event_stream``) to the phone, the
*reader* routes the phone's frames to the socket's handlers by ``type``, and two
watchers close the socket when the phone falls too far behind or its token expires.
When any of them ends, the others are cancelled.

Frame routing: a socket says which frames it takes (``Frames``: their models, from
``web.frames``, and a handler per type); ``ack`` is the loop's own; any other type gets an
``unknown-frame-type`` error, and a frame its model refuses the error the model names. A
handler gets the parsed model and returns the
reply frame (or None for a plain ``ok`` when the frame carried an ``id``); a domain
error becomes an ``error`` frame, and the socket stays open for the next frame.

Close codes: 4401 bad, missing, expired or revoked credentials, 4403 wrong role or
removed member, 1013 (try again later) when the phone fell too far behind, 1009 for an
oversized frame. A socket is closed when its token expires (4401 ``token-expired``), and
at once when its token is revoked (4401 ``token-revoked``) or its member suspended or
removed (4403 ``member-removed``), whichever api process holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
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
from core.events import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from core.tasks import cancel_and_wait
from web.event_stream import EventStream
from web.frames import ClientFrame, ClientFrames, ErrorFrame
from web.runtime import ApiRuntime

log = logging.getLogger(__name__)

# Larger than any frame the contract defines (a location frame is ~150 bytes); a bigger
# one is a broken or hostile client.
MAX_FRAME_BYTES = 16 * 1024
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_BIG = 1009

Handler = Callable[[Any], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class Frames:
    """What a socket takes from the phone: its client frames (``web.frames``: the model
    of each type, and the refusal of any other) and a handler per type but ``ack``.
    ``context`` gives the validation context of each frame (the clock and settings a
    ``location`` is checked against), or None."""

    client: ClientFrames
    handlers: Mapping[str, Handler]
    context: Callable[[], Any] | None = None

    def parse(self, frame: dict[str, Any]) -> ClientFrame:
        return self.client.parse(frame, None if self.context is None else self.context())


def error_frame(exc: CoopError, ref: Any = None) -> dict[str, Any]:
    retry_after_s = exc.retry_after_s if isinstance(exc, RateLimited) else None
    return ErrorFrame(code=exc.slug, detail=exc.detail, ref=ref, retry_after_s=retry_after_s).wire()


async def send(ws: WebSocket, frame: dict[str, Any] | str) -> None:
    text = (
        frame if isinstance(frame, str) else orjson.dumps(frame, option=orjson.OPT_UTC_Z).decode()
    )
    await ws.send_text(text)


async def authenticate_socket(rt: ApiRuntime, ws: WebSocket, role: Role) -> Principal | None:
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


async def open_socket(ws: WebSocket, role: Role) -> tuple[ApiRuntime, Principal] | None:
    """A socket's first step: the process's runtime and who is on the socket, or None
    when the socket was refused and closed (``authenticate_socket``)."""
    rt: ApiRuntime = ws.app.state.runtime
    who = await authenticate_socket(rt, ws, role)
    return None if who is None else (rt, who)


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


async def first_to_end(*jobs: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``jobs`` as tasks until one ends, then cancel and await the rest (a phone
    that left, or a socket closed by one of them, ends them all)."""
    tasks = [asyncio.create_task(job()) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            await cancel_and_wait(t, suppress=(WebSocketDisconnect, RuntimeError, OSError))


async def close_quietly(ws: WebSocket) -> None:
    if ws.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await ws.close()


async def serve_socket(
    rt: ApiRuntime,
    ws: WebSocket,
    *,
    audience: str,
    who: Principal,
    frames: Frames,
) -> None:
    """Run the pump, the reader and the watchers until the phone leaves or a task
    fails."""
    ident = who.subject_id
    stream = EventStream(rt, ws, audience=audience, ident=ident, token_id=who.token_id)
    metrics.SOCKETS_CONNECTED.labels(audience).inc()
    metrics.SOCKET_CONNECTIONS.labels(audience).inc()
    try:
        async with rt.hub.subscribe(rt.keys.channel(audience, ident)) as sub:
            await stream.replay()

            async def pump() -> None:
                await stream.pump(sub)

            async def overflow() -> None:
                await sub.overflowed.wait()
                await ws.close(CLOSE_TRY_AGAIN, "too far behind; reconnect and resume")

            async def reader() -> None:
                await read_frames(ws, audience=audience, frames=frames, ack=stream.ack)

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

            await first_to_end(pump, overflow, reader, expiry)
    finally:
        metrics.SOCKETS_CONNECTED.labels(audience).dec()
        await close_quietly(ws)


async def read_frames(ws: WebSocket, *, audience: str, frames: Frames, ack: Handler) -> None:
    """Read the phone's frames until it leaves: each is parsed, routed and answered; the
    socket stays open after a bad frame or a failing backing service."""
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
            parsed = frames.parse(frame)
            handler = ack if frame["type"] == "ack" else frames.handlers[frame["type"]]
            reply = await handler(parsed)
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


# Frame types the contract defines (docs/websocket.md); anything else is counted as
# "other", so a hostile client cannot grow the metrics' label space.
KNOWN_TYPES = frozenset({"status", "location", "accept", "decline", "ack"})
_FRAME_METRICS: dict[tuple[str, str], tuple[Any, Any]] = {}


def _frame_metrics(audience: str, frame_type: str) -> tuple[Any, Any]:
    """The labelled counter and latency children, looked up once per (audience, type),
    not per frame."""
    label = frame_type if frame_type in KNOWN_TYPES else "other"
    children = _FRAME_METRICS.get((audience, label))
    if children is None:
        children = _FRAME_METRICS[(audience, label)] = (
            metrics.SOCKET_FRAMES.labels(audience, label),
            metrics.SOCKET_FRAME_SECONDS.labels(audience, label),
        )
    return children
