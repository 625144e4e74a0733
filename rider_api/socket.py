"""The rider socket: ``trip.updated`` events (and the driver's position while on the way)
flow to the phone; the phone sends only ``ack`` frames."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from web.frames import ClientFrames, RiderClientFrame
from web.sockets import Frames, open_socket, serve_socket

router = APIRouter()

# Riders only listen: every frame but ``ack`` (the socket loop's own) is refused.
RIDER_FRAMES = Frames(
    ClientFrames.of(RiderClientFrame, refusal="riders send only 'ack' frames, not {type!r}"), {}
)


@router.websocket("/v1/riders/ws")
async def rider_socket(ws: WebSocket) -> None:
    opened = await open_socket(ws, "rider")
    if opened is not None:
        rt, who = opened
        await serve_socket(rt, ws, audience="rider", who=who, frames=RIDER_FRAMES)
