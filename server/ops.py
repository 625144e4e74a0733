"""The operator dashboard: the page (``GET /ops``), its data (``GET
/v1/operator/dashboard``) and its live socket (``/v1/operator/live``).

The page is a static app shell built from ``frontend/ops`` into ``server/static/ops``:
it holds no data and no secret, so a browser may load it without credentials (a
navigation cannot send an ``Authorization`` header). It asks for the operator token,
keeps it in ``sessionStorage`` (this tab only, gone when the tab closes) and presents it
on every data call: ``Authorization: Bearer`` over HTTP, ``?token=`` on the socket.
Everything with data in it answers only the operator: 401 / close 4401 without valid
credentials, 403 / close 4403 for a rider's or a driver's (``docs/dashboard.md``).
"""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, HTMLResponse, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from core.errors import CoopError, NotFound, Unavailable, UnknownFrameType
from core.settings import Settings
from server.dashboard import SNAPSHOT_EVERY_S, Dashboard
from web.deps import CurrentOperator, RuntimeDep
from web.runtime import ApiRuntime
from web.sockets import (
    CLOSE_TOO_BIG,
    MAX_FRAME_BYTES,
    close_quietly,
    error_frame,
    first_to_end,
    open_socket,
    parse_frame,
    send,
)

router = APIRouter(tags=["operators"])

STATIC = Path(__file__).resolve().parent / "static" / "ops"
_ASSET_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.(js|css|map|svg|png|woff2?)$")
CONFIG_MARK = "<!--coop-config-->"


class DashboardNotBuilt(Unavailable):
    slug = "dashboard-not-built"
    title = "The dashboard's front end has not been built"


def dashboard_of(app: FastAPI, rt: ApiRuntime) -> Dashboard:
    """The process's one snapshot producer (``server.dashboard``)."""
    board: Dashboard | None = getattr(app.state, "dashboard", None)
    if board is None or board.rt is not rt:
        board = app.state.dashboard = Dashboard(rt)
    return board


def _tile_origin(template: str) -> str | None:
    """The origin the CSP must allow images from; ``{s}`` subdomains become ``*``."""
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc.replace('{s}', '*')}"


def _headers(settings: Settings) -> dict[str, str]:
    tiles = _tile_origin(settings.ops_tile_url) if settings.ops_tile_url else None
    img = "'self' data:" + (f" {tiles}" if tiles else "")
    return {
        # Only our own scripts run, and data goes only to this server: a token typed
        # into the page cannot be sent anywhere else.
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            f"img-src {img}; connect-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        ),
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


@router.get(
    "/ops",
    operation_id="getOpsDashboardPage",
    response_class=HTMLResponse,
    responses={503: {"description": "the front end has not been built (make setup)"}},
)
async def ops_page(rt: RuntimeDep) -> HTMLResponse:
    """The dashboard's page: an app shell with no data; it asks for the operator token."""
    index = STATIC / "index.html"
    if not index.is_file():
        raise DashboardNotBuilt(
            "server/static/ops is missing: run `make setup` (npm ci and the build)"
        )
    config = orjson.dumps(
        {
            "tile_url": rt.settings.ops_tile_url,
            "tile_attribution": rt.settings.ops_tile_attribution,
            "snapshot_every_s": SNAPSHOT_EVERY_S,
        }
    ).decode()
    # JSON in a non-executing script element: readable by the page, allowed by the CSP.
    tag = f'<script type="application/json" id="coop-config">{html.escape(config, False)}</script>'
    page = index.read_text().replace(CONFIG_MARK, tag)
    return HTMLResponse(page, headers=_headers(rt.settings))


@router.get("/ops/assets/{name}", include_in_schema=False)
async def ops_asset(name: str) -> Response:
    path = STATIC / "assets" / name
    if not _ASSET_NAME.match(name) or not path.is_file():
        raise NotFound(f"no dashboard asset {name}")
    # Built names carry a content hash, so they may be cached for good.
    return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})


@router.get("/v1/operator/dashboard", operation_id="getDashboardSnapshot")
async def dashboard_snapshot(
    who: CurrentOperator, rt: RuntimeDep, request: Request
) -> dict[str, Any]:
    """The snapshot the live socket pushes: KPIs, supply by H3 cell, markers, the fare
    rule and open proposals (``docs/dashboard.md``)."""
    return await dashboard_of(request.app, rt).snapshot()


@router.websocket("/v1/operator/live")
async def live(ws: WebSocket) -> None:
    opened = await open_socket(ws, "operator")
    if opened is None:
        return
    rt, _ = opened
    board = dashboard_of(ws.app, rt)
    metrics.SOCKETS_CONNECTED.labels("operator").inc()
    metrics.SOCKET_CONNECTIONS.labels("operator").inc()
    sent = metrics.SOCKET_FRAMES_SENT.labels("operator")

    async def push() -> None:
        last = 0
        while True:
            try:
                seq, frame = await board.frame()
            except (RedisError, SQLAlchemyError, OSError):
                # The socket outlives a backing service's hiccup; say so and try again.
                await send(ws, error_frame(Unavailable("the snapshot could not be built")))
                await asyncio.sleep(SNAPSHOT_EVERY_S)
                continue
            if seq != last:
                await ws.send_text(frame)
                sent.inc()
                last = seq
            # Wake just after the snapshot goes stale: the first watcher to ask rebuilds
            # it, the others wait on its lock and get the same one.
            await asyncio.sleep(board.due_in_s() + 0.01)

    async def read() -> None:
        # The operator's page only listens; whatever it sends gets an error frame.
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text") or message.get("bytes") or ""
            if len(data) > MAX_FRAME_BYTES:
                await ws.close(CLOSE_TOO_BIG, "frame too large")
                return
            ref = None
            refused: CoopError = UnknownFrameType("the operator's live socket takes no frames")
            try:
                ref = parse_frame(data).get("id")
            except CoopError as exc:
                refused = exc
            metrics.SOCKET_ERRORS.labels("operator", refused.slug).inc()
            await send(ws, error_frame(refused, ref))

    try:
        await first_to_end(push, read)
    finally:
        metrics.SOCKETS_CONNECTED.labels("operator").dec()
        await close_quietly(ws)
