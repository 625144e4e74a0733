"""The composition root: ``create_app()`` wires settings, services, routes and the
dispatcher into one ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from core import metrics
from core.settings import Settings, get_settings
from dispatch.dispatcher import Dispatcher
from driver_api import governance as governance_routes
from driver_api import routes as driver_routes
from driver_api import socket as driver_socket
from rider_api import routes as rider_routes
from rider_api import socket as rider_socket
from server import (
    contract,
    coop,
    fares_routes,
    health,
    logs,
    operator,
    ops,
    problems,
    security_routes,
)
from server.limits import BodySizeLimit
from web.runtime import ApiRuntime


class MetricsMiddleware:
    """Counts and times HTTP requests by route template (not raw path, so ids do not
    explode the label space)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)  # type: ignore[arg-type]
        finally:
            route = _route_of(scope)
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


def _route_of(scope: Scope) -> str:
    # The router records the matched route in the (shared, mutated) scope.
    route = scope.get("route")
    return str(getattr(route, "path", None) or "unmatched")


def create_app(settings: Settings | None = None, *, run_dispatcher: bool = True) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = ApiRuntime.create(settings)
        await rt.start()
        app.state.runtime = rt
        dispatcher_task = None
        dispatcher = None
        if run_dispatcher:
            dispatcher = Dispatcher(rt)
            dispatcher_task = asyncio.create_task(dispatcher.run(), name="dispatcher")
        try:
            yield
        finally:
            if dispatcher is not None and dispatcher_task is not None:
                dispatcher.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(dispatcher_task, 10)
            await rt.close()

    app = FastAPI(
        title="coopride",
        version="1.0.0",
        summary="Dispatch backend for a driver-owned ride-hailing co-op",
        lifespan=lifespan,
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_body_bytes=settings.max_body_bytes)
    _openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problems.document_errors(_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(logs.RequestIdMiddleware)
    for module in (
        health,
        rider_routes,
        driver_routes,
        operator,
        ops,
        fares_routes,
        governance_routes,
        coop,
        security_routes,
        contract,
    ):
        app.include_router(module.router)
    app.include_router(rider_socket.router)
    app.include_router(driver_socket.router)
    if settings.bench_endpoints:
        from server import bench

        app.include_router(bench.router)
    return app
