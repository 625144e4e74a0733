"""The ``coopride`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from core.settings import get_settings


def _alembic_config() -> object:
    from alembic.config import Config

    here = Path(__file__).resolve().parent.parent / "migrations"
    cfg = Config(str(here / "alembic.ini"))
    cfg.set_main_option("script_location", str(here))
    cfg.set_main_option("sqlalchemy.url", get_settings().database_url.replace("%", "%%"))
    return cfg


def migrate(revision: str = "head") -> None:
    from alembic import command

    print(f"[migrate] upgrading database to {revision}", flush=True)
    command.upgrade(_alembic_config(), revision)  # type: ignore[arg-type]
    print("[migrate] done", flush=True)


def serve(host: str, port: int, *, dispatcher: bool, workers: int, log_level: str) -> None:
    import uvicorn

    from server.logs import configure

    configure(log_level.upper())
    if workers > 1:
        # Each worker builds its own app; only one holds the dispatcher lock at a time.
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

    uvicorn.run(
        create_app(run_dispatcher=dispatcher),
        host=host,
        port=port,
        log_config=None,
        ws="websockets-sansio",
        lifespan="on",
    )


def app_with_dispatcher() -> object:
    from server.app import create_app

    return create_app(run_dispatcher=True)


def app_api_only() -> object:
    from server.app import create_app

    return create_app(run_dispatcher=False)


def run_dispatcher(log_level: str) -> None:
    from dispatch.dispatcher import Dispatcher
    from dispatch.runtime import Runtime
    from server.logs import configure

    configure(log_level.upper())

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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
