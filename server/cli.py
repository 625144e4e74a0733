"""The ``coopride`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, TypedDict

from core.data import DataFile, MissingDataError, data_path, given_file
from core.settings import Settings, get_settings, trusted_proxies
from server.preflight import ConfigError, check, load_settings


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


class ProxyOptions(TypedDict):
    proxy_headers: bool
    forwarded_allow_ips: list[str]


def proxy_options(trusted: tuple[str, ...]) -> ProxyOptions:
    """uvicorn's options for the trusted reverse proxies: with none, forwarded headers are
    not read at all (uvicorn's own default would trust 127.0.0.1); with some, a request
    from one of them gets the client address from ``X-Forwarded-For`` (the right-most
    entry that is not itself a trusted proxy, so a client cannot prepend its own) and the
    scheme from ``X-Forwarded-Proto``. Rate limits and access logs see that address."""
    return ProxyOptions(proxy_headers=bool(trusted), forwarded_allow_ips=list(trusted))


def serve(
    host: str,
    port: int,
    *,
    dispatcher: bool,
    workers: int,
    log_level: str,
    forwarded_allow_ips: str | None = None,
) -> None:
    """``forwarded_allow_ips`` (``--forwarded-allow-ips``), when given, replaces
    ``COOP_TRUSTED_PROXIES``."""
    settings = load_settings()
    check_data(settings)
    check(settings)
    import uvicorn

    from server.logs import configure

    configure(log_level.upper(), secrets=(settings.operator_token, settings.jwt_secret))
    trusted = trusted_proxies(
        settings.trusted_proxies if forwarded_allow_ips is None else forwarded_allow_ips
    )
    logging.getLogger("server.cli").info(
        "trusted proxies: %s", ", ".join(trusted) or "none (the peer address is the client's)"
    )
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
            **proxy_options(trusted),
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
        **proxy_options(trusted),
    )


_WORKER_LOG_LEVEL = "COOP_WORKER_LOG_LEVEL"


def check_data(settings: Settings) -> None:
    """Every data file the configured ETA model reads is there, before any process starts:
    otherwise one :class:`MissingDataError` line, not a failed start-up's stack trace."""
    from geo.eta import data_needed

    for file in data_needed(settings.eta_model):
        data_path(file)
    for file in data_needed(settings.trip_eta_model, leg_at_a_time=True):
        data_path(file)


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
    check_data(settings)
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, except a flag's (``store_true``) and an
    option left unset by default (None), whose help says what leaving it out means."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def version() -> str:
    """The installed distribution's version; from a source tree that was never
    installed, ``pyproject.toml``'s; else ``unknown``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("coopride")
    except PackageNotFoundError:
        pass
    import tomllib

    try:
        with (Path(__file__).resolve().parent.parent / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


class _Version(argparse.Action):
    """``--version``: looked up only when asked for (importlib.metadata takes ~50 ms)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(f"coopride {version()}", flush=True)
        parser.exit()


def contract_command(action: str, directory: Path) -> int:
    """``coopride contract write|check``: no database or Redis needed (server/contract.py)."""
    from server import contract

    if action == "write":
        for path in contract.write(directory):
            print(f"[contract] wrote {path}", flush=True)
        return 0
    stale = contract.stale(directory)
    for name in stale:
        print(f"[contract] {directory / name} is stale: run {contract.REGENERATE}", flush=True)
    return 1 if stale else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``coopride`` command's parser (``loadtest``'s options are the load test's own:
    ``python -m loadtests --help``)."""
    from simulation import defaults as sim

    parser = argparse.ArgumentParser(
        prog="coopride",
        description="The dispatch backend of a driver-owned ride-hailing cooperative.",
        epilog="`coopride COMMAND --help` for a command's options and their defaults.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, title="commands")

    def command(name: str, about: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=about, description=about, formatter_class=HelpFormatter)

    p_migrate = command("migrate", "apply database migrations")
    p_migrate.add_argument(
        "revision", nargs="?", default="head", help="the Alembic revision to upgrade to"
    )
    p_serve = command("serve", "run the api (and the dispatcher, by default)")
    p_serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p_serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    p_serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        help="api only; run `coopride dispatcher` separately",
    )
    p_serve.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=1,
        help="uvicorn worker processes; each runs a dispatcher, the leader lock lets one work",
    )
    p_serve.add_argument(
        "--log-level", metavar="LEVEL", default="info", help="debug, info, warning or error"
    )
    p_serve.add_argument(
        "--forwarded-allow-ips",
        metavar="ADDRESSES",
        help="reverse proxies whose X-Forwarded-For is believed, comma-separated addresses "
        "or networks; default: COOP_TRUSTED_PROXIES (empty trusts none)",
    )
    p_disp = command("dispatcher", "run the dispatcher only")
    p_disp.add_argument(
        "--log-level", metavar="LEVEL", default="info", help="debug, info, warning or error"
    )
    p_audit = command("audit", "the co-op's hash-chained audit log")
    audit_sub = p_audit.add_subparsers(dest="audit_command", required=True, title="commands")
    audit_sub.add_parser(
        "verify",
        help="recompute the chain; exit 1 at the first break",
        description="recompute the chain from the database; exit 1 at the first break",
        formatter_class=HelpFormatter,
    )
    # The replay's defaults are the live service's (simulation/defaults.py).
    p_sim = command("simulate", "replay a demand file through the dispatcher")
    p_sim.add_argument(
        "--demand",
        metavar="FILE",
        required=True,
        help="CSV (gzip or plain) of pickups (docs/simulation.md)",
    )
    p_sim.add_argument("--drivers", metavar="N", type=int, required=True, help="fleet size")
    p_sim.add_argument(
        "--policy", choices=("greedy", "batched"), required=True, help="the dispatch policy"
    )
    p_sim.add_argument(
        "--fairness",
        metavar="W",
        type=float,
        default=0.0,
        help="fairness weight in [0, 1]; greedy ignores it, as the live one does",
    )
    p_sim.add_argument(
        "--speedup",
        metavar="X",
        type=float,
        default=1.0,
        help="no effect: the clock is simulated and runs as fast as it can",
    )
    p_sim.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=sim.DEFAULT_SEED,
        help="one seed for everything random",
    )
    p_sim.add_argument(
        "--start",
        metavar="TIME",
        help="local time (2014-04-30 17:00); default: the busiest two hours of the file",
    )
    p_sim.add_argument(
        "--end", metavar="TIME", help="local time, exclusive; default: two hours after the start"
    )
    p_sim.add_argument(
        "--batch-s",
        metavar="S",
        type=float,
        default=sim.DEFAULT_BATCH_S,
        help="dispatch window in seconds (COOP_DISPATCH_BATCH_S)",
    )
    p_sim.add_argument(
        "--offer-accept-s",
        metavar="S",
        type=float,
        default=sim.DEFAULT_OFFER_ACCEPT_S,
        help="seconds a driver takes to answer an offer",
    )
    p_sim.add_argument(
        "--decline-rate",
        metavar="P",
        type=float,
        default=0.0,
        help="share of offers declined (the trip is requeued without that driver)",
    )
    p_sim.add_argument(
        "--max-pickup-eta-s",
        metavar="S",
        type=int,
        default=sim.DEFAULT_MAX_PICKUP_ETA_S,
        help="longest pickup offered, in seconds (COOP_MAX_PICKUP_ETA_S)",
    )
    p_sim.add_argument(
        "--request-timeout-s",
        metavar="S",
        type=float,
        default=sim.DEFAULT_REQUEST_TIMEOUT_S,
        help="an open request this old expires (COOP_TRIP_REQUEST_TIMEOUT_S)",
    )
    p_sim.add_argument(
        "--fare",
        metavar="B,K,M,MIN",
        default=sim.SEEDED_FARE,
        help="base, per km, per minute and minimum, in cents (the seeded rule)",
    )
    p_sim.add_argument(
        "--guidance",
        action="store_true",
        help="idle drivers move to where demand will be (a forecast from the file's "
        "earlier weeks; docs/simulation.md)",
    )
    p_sim.add_argument(
        "--guidance-compliance",
        metavar="SHARE",
        type=float,
        default=1.0,
        help="share of drivers in [0, 1] who follow the guidance",
    )
    p_sim.add_argument(
        "--json",
        action="store_true",
        help="one JSON object on stdout (and no progress bar on stderr)",
    )
    p_demo = command("demo", "serve the backend with a living demo city")
    p_demo.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p_demo.add_argument("--port", type=int, default=8000, help="port to listen on")
    p_demo.add_argument(
        "--drivers", metavar="N", type=int, default=30, help="demo drivers (members) online"
    )
    p_demo.add_argument(
        "--speedup",
        metavar="X",
        type=float,
        default=20.0,
        help="replay demand and drive this many times faster than real",
    )
    p_demo.add_argument(
        "--riders-per-minute",
        metavar="R",
        type=float,
        default=20.0,
        help="riders requesting a trip per minute of real time, at most",
    )
    p_demo.add_argument(
        "--seed", metavar="N", type=int, default=2014, help="seed for the city's randomness"
    )
    p_demo.add_argument(
        "--duration",
        metavar="S",
        type=float,
        help="stop after this many seconds; default: at Ctrl-C",
    )
    p_demo.add_argument(
        "--report-every", metavar="S", type=float, default=10.0, help="seconds between tally lines"
    )
    p_demo.add_argument(
        "--demand",
        metavar="FILE",
        type=Path,
        help=f"the pickups to replay; default: {DataFile.PICKUPS.value} in the data folder",
    )
    p_eta = command(
        "eta", "the learned ETA model: fit it on observed trips, score it (docs/eta.md)"
    )
    eta_sub = p_eta.add_subparsers(dest="eta_command", required=True, title="commands")

    def eta_command(name: str, about: str) -> argparse.ArgumentParser:
        return eta_sub.add_parser(
            name, help=about, description=about, formatter_class=HelpFormatter
        )

    p_fit = eta_command("fit", "fit the model on observed trips and write it")
    p_fit.add_argument(
        "--trips",
        metavar="FILE",
        type=Path,
        required=True,
        help="CSV of observed trips with duration_s (data/README.md)",
    )
    p_fit.add_argument(
        "--months", metavar="M,M", default="1,2,3,4", help="months to fit on; the rest are held out"
    )
    p_fit.add_argument(
        "--out",
        metavar="FILE",
        type=Path,
        help=f"where to write it; default: {DataFile.ETA_MODEL.value} in the data folder",
    )
    p_fit.add_argument("--seed", metavar="N", type=int, default=0, help="the regressor's seed")
    p_evaluate = eta_command(
        "evaluate", "score the model against real durations it was not fitted on"
    )
    p_evaluate.add_argument(
        "--trips",
        metavar="FILE",
        type=Path,
        required=True,
        help="CSV of observed trips with duration_s (data/README.md)",
    )
    p_evaluate.add_argument(
        "--model",
        metavar="FILE",
        type=Path,
        help=f"default: {DataFile.ETA_MODEL.value} in the data folder",
    )
    p_evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p_contract = command("contract", "the wire contract as files: openapi.json and asyncapi.json")
    contract_sub = p_contract.add_subparsers(
        dest="contract_command", required=True, title="commands"
    )
    for name, about in (
        ("write", "regenerate the contract files from the code"),
        ("check", "exit 1 if a contract file differs from what the code generates"),
    ):
        p_contract_cmd = contract_sub.add_parser(
            name, help=about, description=about, formatter_class=HelpFormatter
        )
        p_contract_cmd.add_argument(
            "--dir",
            metavar="DIR",
            type=Path,
            default=Path("."),
            help="where the files live: the repository root",
        )
    # Listed for `coopride --help`; its options are the load test's own (see main's start).
    sub.add_parser(
        "loadtest",
        help="a city rollout under Locust, bounded in time (docs/loadtesting.md); "
        "`coopride loadtest --help` for its options",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["loadtest"]:
        load_test(given[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.forwarded_allow_ips is not None:
        try:
            trusted_proxies(args.forwarded_allow_ips)
        except ValueError as e:
            parser.error(f"--forwarded-allow-ips: {e}")
    try:
        return _run(args)
    except (MissingDataError, ConfigError) as exc:
        # One line naming the file or setting and the fix (core/data.py,
        # server/preflight.py); no traceback.
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
            forwarded_allow_ips=args.forwarded_allow_ips,
        )
    elif args.command == "dispatcher":
        run_dispatcher(args.log_level)
    elif args.command == "audit" and args.audit_command == "verify":
        return audit_verify()
    elif args.command == "contract":
        return contract_command(args.contract_command, args.dir)
    elif args.command == "eta":
        from geo.eta import commands

        trips = given_file(args.trips, option="--trips")
        try:
            if args.eta_command == "fit":
                months = tuple(int(m) for m in args.months.split(","))
                return commands.fit(trips, out=args.out, months=months, seed=args.seed, quiet=False)
            return commands.evaluate(trips, model_path=args.model, as_json=args.json)
        except ValueError as exc:  # a file or an option that cannot be read: one line
            print(f"coopride eta {args.eta_command}: {exc}", file=sys.stderr, flush=True)
            return 2
    elif args.command == "simulate":
        from simulation.cli import run_cli

        given_file(Path(args.demand), option="--demand")
        return run_cli(args)
    elif args.command == "demo":
        check(load_settings())

        from server.demo import main as demo_main
        from server.logs import configure

        configure("WARNING")
        check_data(get_settings())
        args.demand = (
            given_file(args.demand, option="--demand")
            if args.demand
            else data_path(DataFile.PICKUPS)
        )
        try:
            return demo_main(args)
        except KeyboardInterrupt:
            print("[demo] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
