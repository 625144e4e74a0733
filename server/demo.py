"""``coopride demo``: the backend with a living city, for a newcomer's first command.

It serves the api and the dispatcher on ``--host``/``--port``, then plays the demo city
(``simulation.city``) through the real API and sockets, exactly as phones would. Ctrl-C
stops the city first, while the server still answers (riders cancel what they asked
for, drivers go offline), then the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from sqlalchemy import select

from core.models import Member
from core.settings import Settings, get_settings
from dispatch.runtime import Runtime
from server.app import create_app
from simulation.city import DEMO_PHONE_PREFIX, DemoCity, KnownMembers


def earlier_members(settings: Settings) -> KnownMembers:
    """The demo's members admitted by earlier runs on this database, phone → id."""

    async def known() -> dict[str, str]:
        rt = Runtime.create(settings)
        try:
            async with rt.sessions() as db:
                rows = await db.scalars(
                    select(Member)
                    .where(Member.phone.like(f"{DEMO_PHONE_PREFIX}%"), Member.status == "active")
                    .order_by(Member.phone)
                )
                return {m.phone: m.id for m in rows}
        finally:
            await rt.close()

    return known


async def run_demo(
    *,
    host: str,
    port: int,
    drivers: int,
    speedup: float,
    riders_per_minute: float,
    seed: int,
    duration_s: float | None,
    demand: Path,
    report_every_s: float,
) -> dict[str, Any]:
    settings = get_settings()
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        lifespan="on",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    # Ctrl-C (or SIGTERM) stops the city first, while the server still answers (riders
    # cancel what they asked for, drivers go offline), then the server; then the summary
    # prints. A second Ctrl-C stops the server at once. uvicorn's own handler would stop
    # the server first and re-raise the signal after shutting down.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    interrupted = asyncio.Event()

    def on_signal() -> None:
        if interrupted.is_set():
            server.should_exit = True
        interrupted.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # the server failed to start: say why
            raise RuntimeError("the server stopped before it started")
        await asyncio.sleep(0.05)
    base = f"http://{host}:{port}"
    print(f"[demo] coopride is serving on {base}", flush=True)
    print(f"[demo]   dashboard       {base}/ops  (sign in with the operator token)", flush=True)
    print(f"[demo]   API docs        {base}/docs", flush=True)
    print(f"[demo]   metrics         {base}/metrics", flush=True)
    print(f"[demo]   readiness       {base}/readyz", flush=True)
    print(f"[demo]   supply by cell  {base}/v1/operator/supply?resolution=8", flush=True)
    print(f"[demo]   operator token  {settings.operator_token}", flush=True)
    print("[demo] Ctrl-C stops the city and the server", flush=True)
    city = DemoCity(
        settings,
        base,
        drivers=drivers,
        speedup=speedup,
        riders_per_minute=riders_per_minute,
        seed=seed,
        demand=demand,
        known_members=earlier_members(settings),
    )
    city.server_exiting = lambda: interrupted.is_set() or bool(server.should_exit)
    stop = asyncio.Event()
    playing = asyncio.create_task(city.run(stop, report_every_s=report_every_s))
    until_interrupted = asyncio.create_task(interrupted.wait())
    try:
        # Until Ctrl-C, the duration, or the server ending by itself.
        await asyncio.wait(
            {serving, until_interrupted}, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        until_interrupted.cancel()
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(playing, 20)
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await serving
    summary = city.tally.summary()
    print("[demo] " + orjson.dumps(summary).decode(), flush=True)
    return summary


def main(args: Any) -> int:
    summary = asyncio.run(
        run_demo(
            host=args.host,
            port=args.port,
            drivers=args.drivers,
            speedup=args.speedup,
            riders_per_minute=args.riders_per_minute,
            seed=args.seed,
            duration_s=args.duration,
            demand=Path(args.demand),
            report_every_s=args.report_every,
        )
    )
    if args.duration is not None and summary["requested"] == 0:
        print("[demo] no rider got a trip: something is wrong", file=sys.stderr)
        return 1
    return 0
