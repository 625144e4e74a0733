"""The rider socket: ``trip.updated`` events (and the driver's position while on the way)
flow to the phone; the phone sends only ``ack`` frames."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from web.runtime import ApiRuntime
from web.sockets import Frames, authenticate_socket, serve_socket

router = APIRouter()

# Riders only listen: every frame but ``ack`` (the socket loop's own) is refused.
RIDER_FRAMES = Frames({}, refusal="riders send only 'ack' frames, not {type!r}")


@router.websocket("/v1/riders/ws")
async def rider_socket(ws: WebSocket) -> None:
    rt: ApiRuntime = ws.app.state.runtime
    who = await authenticate_socket(rt, ws, "rider")
    if who is None:
        return
    await serve_socket(rt, ws, audience="rider", who=who, frames=RIDER_FRAMES)
