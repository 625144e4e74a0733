"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from core.metrics import REGISTRY
from web.deps import RuntimeDep

router = APIRouter(tags=["health"])

# Readiness answers within this, or says not ready: a load balancer must not hang on it.
READY_TIMEOUT_S = 2.0


@router.get("/healthz", operation_id="checkLiveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    operation_id="checkReadiness",
    responses={503: {"description": "a backing service is down"}},
)
async def readyz(rt: RuntimeDep) -> JSONResponse:
    async def database() -> bool:
        async with rt.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis() -> bool:
        return bool(await rt.redis.ping())

    checks: dict[str, str] = {}
    for name, probe in (("database", database), ("redis", redis)):
        try:
            ok = await asyncio.wait_for(probe(), READY_TIMEOUT_S)
            checks[name] = "ok" if ok else "down"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", operation_id="getMetrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
