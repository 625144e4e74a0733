"""The rider socket: ``trip.updated`` events (and the driver's position while on the way)
flow to the phone; the phone sends only ``ack`` frames."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket

from core.errors import UnknownFrameType
from dispatch.realtime import authenticate_socket, serve_socket
from dispatch.runtime import Runtime

router = APIRouter()


@router.websocket("/v1/riders/ws")
async def rider_socket(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.runtime
    who = await authenticate_socket(rt, ws, "rider")
    if who is None:
        return

    async def handle(frame: dict[str, Any]) -> dict[str, Any] | None:
        raise UnknownFrameType(f"riders send only 'ack' frames, not {frame['type']!r}")

    await serve_socket(rt, ws, audience="rider", who=who, handle=handle)
