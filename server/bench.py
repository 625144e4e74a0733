"""A no-op socket for the ingest benchmark (``COOP_BENCH_ENDPOINTS=1`` only).

It does what every socket must do and nothing else: take a frame, parse it, answer
``ok`` with its ``ref``. The driver socket's throughput is reported as a share of this
ceiling, measured in the same run with the same clients.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

router = APIRouter(include_in_schema=False)


@router.websocket("/v1/bench/noop-ws")
async def noop_socket(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            frame = orjson.loads(await ws.receive_text())
            await ws.send_text(orjson.dumps({"type": "ok", "ref": frame.get("id")}).decode())
    except WebSocketDisconnect:
        return
