"""The ``coopride`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path

from core.settings import get_settings
from server.preflight import ConfigError, check, load_settings

# The real demand the demo replays, beside the project (see ../shared/data/README.md).
DEMO_DEMAND = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / ("nyc_uber_pickups_2014-04.csv.gz")
)


def _alembic_config() -> object:
    from alembic.config import Config

    here = Path(__file__).resolve().parent.parent / "migrations"
    cfg = Config(str(here / "alembic.ini"))
    cfg.set_main_option("script_location", str(here))
    cfg.set_main_option("sqlalchemy.url", get_settings().database_url.replace("%", "%%"))
    return cfg


def migrate(revision: str = "head") -> None:
    from alembic import command

    check(load_settings(), redis=False, migrating=True)
    print(f"[migrate] upgrading database to {revision}", flush=True)
    command.upgrade(_alembic_config(), revision)  # type: ignore[arg-type]
    print("[migrate] done", flush=True)


# CPython's default (700, 10, 10) runs a collection every 700 net container allocations
# and a full one, scanning every object alive (the imported libraries and each open
# socket's state), every 100 of those. With 5,000 driver sockets streaming, that was a
# quarter of the api process's CPU in the ingest benchmark. Objects alive after start-up
# are frozen out of collection, and collections run 70x less often: cyclic garbage still
# goes, with a full collection at most once per 20 M net allocations.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(host: str, port: int, *, dispatcher: bool, workers: int, log_level: str) -> None:
    settings = load_settings()
    check(settings)

    import uvicorn

    from server.logs import configure

    configure(log_level.upper(), secrets=(settings.operator_token, settings.jwt_secret))
    if workers > 1:
        # Each worker builds its own app; only one holds the dispatcher lock at a time.
        # Workers are fresh processes: they set up the same scrubbed JSON logs themselves.
        os.environ[_WORKER_LOG_LEVEL] = log_level.upper()
        factory = "server.cli:app_with_dispatcher" if dispatcher else "server.cli:app_api_only"
        uvicorn.run(
            factory,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            ws="websockets-sansio",
            lifespan="on",
        )
        return
    from server.app import create_app

    app = create_app(run_dispatcher=dispatcher)
    tune_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        lifespan="on",
    )


_WORKER_LOG_LEVEL = "COOP_WORKER_LOG_LEVEL"


def _worker_logs() -> None:
    from server.logs import configure

    settings = get_settings()
    configure(
        os.environ.get(_WORKER_LOG_LEVEL, "INFO"),
        secrets=(settings.operator_token, settings.jwt_secret),
    )


def app_with_dispatcher() -> object:
    from server.app import create_app

    _worker_logs()
    app = create_app(run_dispatcher=True)
    tune_gc()
    return app


def app_api_only() -> object:
    from server.app import create_app

    _worker_logs()
    app = create_app(run_dispatcher=False)
    tune_gc()
    return app


def run_dispatcher(log_level: str) -> None:
    settings = load_settings()
    check(settings)

    from dispatch.dispatcher import Dispatcher
    from dispatch.runtime import Runtime
    from server.logs import configure

    configure(log_level.upper(), secrets=(settings.operator_token, settings.jwt_secret))

    async def main() -> None:
        rt = Runtime.create(get_settings())
        await rt.start()
        d = Dispatcher(rt)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, d.stop)
        try:
            await d.run()
        finally:
            await rt.close()

    asyncio.run(main())


def audit_verify() -> int:
    """Recompute the audit log's hash chain from the database; 1 at the first break."""
    from fares.audit import ChainBreak, verify_database

    settings = load_settings()
    check(settings, redis=False)
    result = asyncio.run(verify_database(settings.database_url))
    if isinstance(result, ChainBreak):
        print(f"[audit] chain broken at seq {result.seq}: {result.reason}", flush=True)
        return 1
    print(f"[audit] chain ok: {result.count} entries, head {result.head}", flush=True)
    return 0


def load_test(argv: list[str]) -> None:
    """``coopride loadtest ARGS`` is ``python -m loadtests ARGS``: the load test is a
    program of its own, which the service never imports (Locust patches the process it
    runs in, and a co-op's server needs none of it)."""
    os.execv(sys.executable, [sys.executable, "-m", "loadtests", *argv])


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["loadtest"]:
        load_test(given[1:])
    parser = argparse.ArgumentParser(prog="coopride", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_migrate = sub.add_parser("migrate", help="apply database migrations")
    p_migrate.add_argument("revision", nargs="?", default="head")
    p_serve = sub.add_parser("serve", help="run the api (and the dispatcher, by default)")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=8000)
    p_serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="api only; run `coopride dispatcher` separately",
    )
    p_serve.add_argument("--workers", type=int, default=1)
    p_serve.add_argument("--log-level", default="info")
    p_disp = sub.add_parser("dispatcher", help="run the dispatcher only")
    p_disp.add_argument("--log-level", default="info")
    p_audit = sub.add_parser("audit", help="the co-op's hash-chained audit log")
    audit_sub = p_audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="recompute the chain; exit 1 at the first break")
    # Defaults left as None are the live service's (see simulation/simulator.py).
    p_sim = sub.add_parser("simulate", help="replay a demand file through the dispatcher")
    p_sim.add_argument("--demand", required=True, help="CSV (gzip or plain) of pickups")
    p_sim.add_argument("--drivers", type=int, required=True)
    p_sim.add_argument("--policy", choices=("greedy", "batched"), required=True)
    p_sim.add_argument("--fairness", type=float, help="fairness weight in [0, 1]")
    p_sim.add_argument("--speedup", type=float, help="no effect: the clock is simulated")
    p_sim.add_argument("--seed", type=int)
    p_sim.add_argument("--start", help="local time; default: the busiest two hours")
    p_sim.add_argument("--end", help="local time, exclusive")
    p_sim.add_argument("--batch-s", type=float)
    p_sim.add_argument("--offer-accept-s", type=float)
    p_sim.add_argument("--decline-rate", type=float)
    p_sim.add_argument("--max-pickup-eta-s", type=int)
    p_sim.add_argument("--request-timeout-s", type=float)
    p_sim.add_argument("--fare", help="BASE,PER_KM,PER_MINUTE,MINIMUM cents (250,120,35,800)")
    p_sim.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p_demo = sub.add_parser("demo", help="serve the backend with a living demo city")
    p_demo.add_argument("--host", default="127.0.0.1")
    p_demo.add_argument("--port", type=int, default=8000)
    p_demo.add_argument("--drivers", type=int, default=30)
    p_demo.add_argument(
        "--speedup",
        type=float,
        default=20.0,
        help="replay demand and drive this many times faster than real",
    )
    p_demo.add_argument("--riders-per-minute", type=float, default=20.0)
    p_demo.add_argument("--seed", type=int, default=2014)
    p_demo.add_argument("--duration", type=float, help="stop after this many seconds")
    p_demo.add_argument("--report-every", type=float, default=10.0)
    p_demo.add_argument("--demand", default=str(DEMO_DEMAND))
    # Listed for `coopride --help`; its options are the load test's own (see main's start).
    sub.add_parser(
        "loadtest",
        help="a city rollout under Locust, bounded in time (docs/loadtesting.md); "
        "`coopride loadtest --help` for its options",
    )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        # One line naming the setting and the fix (server/preflight.py); no traceback.
        print(f"coopride {args.command}: {exc}", file=sys.stderr, flush=True)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "migrate":
        migrate(args.revision)
    elif args.command == "serve":
        serve(
            args.host,
            args.port,
            dispatcher=not args.no_dispatcher,
            workers=args.workers,
            log_level=args.log_level,
        )
    elif args.command == "dispatcher":
        run_dispatcher(args.log_level)
    elif args.command == "audit" and args.audit_command == "verify":
        return audit_verify()
    elif args.command == "simulate":
        from simulation.cli import run_cli

        return run_cli(args)
    elif args.command == "demo":
        check(load_settings())

        from server.demo import main as demo_main
        from server.logs import configure

        configure("WARNING")
        try:
            return demo_main(args)
        except KeyboardInterrupt:
            print("[demo] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
