"""The load test's control under Locust: its options, the plan every process shares, the
checks that stop a setting that cannot work, the live dispatch KPIs and the web UI's tab.
Imported by ``loadtests/locustfile.py`` only (it imports Locust and gevent); its event
listeners register on import.

- Options: every ``LoadPlan`` field is a Locust option (``loadtests/options.py``), shown
  in the web UI's start form, with its environment variable as default; plus the KPI
  reader's ``--database-url``, ``--kpi-json``, ``--batch-s`` and the thresholds.
- The plan: the master (or the one local process) resolves it when a run starts (the
  form, the command line, the environment, ``-t`` for the length) and checks it against
  the server (``loadtests/preflight.py``; headless, already at start-up). Workers get it
  before the first user starts and say when they have read its demand file
  (``Workers``); the spawn messages carry it too (``--coop-resolved``, hidden).
- ``Stop.now``: one line, then the test stops at once (headless: Locust quits, exit 2; a
  worker tells the master). Nothing retries the same failure.
- ``Live``: the master reads the run's KPIs from the server every few seconds — trips and
  offers from its database (``loadtests/kpi.py``, as ``kpi.json``), online drivers from
  the operator API — for the web UI's "Dispatch KPIs" tab and the headless log; at the
  end it writes ``kpi.json`` (``--kpi-json``) and exits 1 when a threshold was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import httpx
from locust import argument_parser, events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests import kpi, options, preflight, trace
from loadtests.options import OPTIONS, SettingError
from loadtests.plan import LoadPlan

logger = logging.getLogger("coopride")
# One line a request at INFO: the checks and the KPI reads are not the load.
logging.getLogger("httpx").setLevel(logging.WARNING)

ABORT_MESSAGE = "coopride-stop"
# Master → workers as a run starts: the plan (JSON); workers → master: read it (run id).
PLAN_MESSAGE = "coopride-plan"
LOADED_MESSAGE = "coopride-loaded"
# Every worker reads the demand file before the first user starts; a worker that has not
# within this long stops the test.
WORKERS_READY_WAIT_S = 180.0
KPI_EVERY_S = 5.0
PROGRESS_EVERY_S = 1.0
ADMIT = ("POST", "/v1/drivers [admit]")
SIGN_UP = ("POST", "/v1/riders")
KPI_TAB = "coop-kpis"
# Locust 2.47 rebuilds its whole argument parser for every option of each spawn message a
# worker gets (``WorkerRunner.handle_message`` calls ``default_args_dict()`` per key): with
# this plan's options, a second and more of a blocked worker per message while the shape
# ramps (a message a second), so the worker missed its heartbeats and the master dropped
# it. The answer is the same for the life of the process: computed once.
argument_parser.default_args_dict = functools.cache(argument_parser.default_args_dict)

# Parser defaults, to tell a value given on the command line from one left as it was
# (a JSON plan's value wins over an option left at its default).
_DEFAULTS: dict[str, Any] = {}


def _option_type(option: options.PlanOption) -> Callable[[str], Any] | None:
    if option.parse in (int, float):
        return option.parse
    return None  # strings: parsed by options.build, as the web form's are


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    server = options.server_defaults()
    try:
        for option in OPTIONS:
            value = options.default(option, server)
            if option.field == "duration_s" and options.from_environment(option) is None:
                value = None  # -t/--run-time, else the plan's
            elif option.parse not in (int, float, str) and not option.is_bool:
                value = options.shown(value) if value is not None else None
            _DEFAULTS[option.field] = value
            kwargs: dict[str, Any] = {
                "dest": option.field,
                "default": value,
                "help": f"{option.help} [{option.variable}]",
                "is_secret": option.secret,
            }
            if option.is_bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _option_type(option)
                kwargs["choices"] = option.choices
            parser.add_argument(option.flag, **kwargs)
    except SettingError as exc:
        _fatal(str(exc))
    parser.add_argument(
        "--coop-plan",
        default=os.environ.get("COOPRIDE_LOAD_PLAN", ""),
        help="a JSON plan (LoadPlan fields), or a file of one; options given override it "
        "[COOPRIDE_LOAD_PLAN]",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--database-url",
        default=server.get("database_url", ""),
        help="the server's database, where the KPIs are read [COOP_DATABASE_URL]",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--batch-s",
        type=float,
        default=server.get("dispatch_batch_s", 2.0),
        help="the server's dispatch window, s (the p99 threshold's default) "
        "[COOP_DISPATCH_BATCH_S]",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--kpi-json",
        default=os.environ.get("COOPRIDE_KPI_JSON", ""),
        help="write the dispatch KPI summary here at the end [COOPRIDE_KPI_JSON]",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--max-p99-offer-s",
        type=float,
        default=None,
        help="threshold: p99 request→offer, s (default: --batch-s + 1)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        default=0.0,
        help="threshold: failed ÷ all Locust requests",
        include_in_web_ui=False,
    )
    # For `coopride loadtest`: where the master writes the run's progress each second.
    parser.add_argument(
        "--coop-progress", default="", help=argparse.SUPPRESS, include_in_web_ui=False
    )
    # The resolved plan, master → workers with the spawn message.
    parser.add_argument(
        "--coop-resolved", default="", help=argparse.SUPPRESS, include_in_web_ui=False
    )


def _fatal(line: str) -> None:
    """A setting that cannot work, found before the test: one line, exit 2."""
    sys.stderr.write(f"coopride load test: {line}\n")
    sys.exit(2)


def _is_worker(environment: Environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


# -- stopping at once -----------------------------------------------------------------------


class Stop:
    """The line that stopped the test (None while it runs)."""

    line: str | None = None

    @classmethod
    def now(cls, environment: Environment, line: str) -> None:
        if cls.line is not None:
            return
        cls.line = line
        environment.process_exit_code = 2
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            logger.error("stopped: %s", line)
            runner.send_message(ABORT_MESSAGE, {"line": line})
            return
        logger.error("stopped: %s", line)
        Progress.write(environment)
        if runner is not None:
            gevent.spawn(_stop, environment)

    @classmethod
    def reset(cls, environment: Environment) -> None:
        if cls.line is not None:
            cls.line = None
            environment.process_exit_code = None


def _stop(environment: Environment) -> None:
    """Headless (or autostarted): quit, as Locust does at the end of a shape. With the web
    UI: stop the test; the line shows in the KPI tab, and the form can fix the setting."""
    assert environment.runner is not None
    options_ = environment.parsed_options
    ui = environment.web_ui
    if ui is None or (options_ is not None and options_.autostart):
        environment.runner.quit()
        if ui is not None:
            ui.stop()
    else:
        environment.runner.stop()


def _on_worker_stop(environment: Environment, msg: Any, **_: Any) -> None:
    Stop.now(environment, f"{msg.data['line']} (worker {msg.node_id})")


# -- the plan ---------------------------------------------------------------------------------


class City:
    """What every user of this process shares: the plan, the demand, the test's clock."""

    plan: LoadPlan | None = None
    demand: trace.Demand | None = None
    demand_key: tuple[Any, ...] | None = None
    pool: int = 0
    started: float | None = None  # monotonic, at test_start
    started_at: datetime | None = None
    ended_at: datetime | None = None
    prepared = False  # resolved and checked for the current run (master / local)

    @classmethod
    def resolve(cls, environment: Environment) -> LoadPlan:
        """The plan from the options (command line, environment, web form, ``-t``) over
        the JSON plan."""
        parsed = environment.parsed_options
        assert parsed is not None
        base = options.read_base(getattr(parsed, "coop_plan", "") or "")
        given: dict[str, Any] = {}
        for option in OPTIONS:
            value = getattr(parsed, option.field, None)
            if base and value == _DEFAULTS.get(option.field):
                continue
            given[option.field] = value
        if given.get("duration_s") in (None, "") and "duration_s" not in base:
            run_time = getattr(parsed, "run_time", None)
            given["duration_s"] = float(run_time) if run_time else None
        return options.build(given, base)

    @classmethod
    def use(cls, plan: LoadPlan) -> None:
        """Takes ``plan``, reading its demand file unless it is the one already read."""
        key = (plan.demand, plan.trace_start, plan.area, plan.seed)
        if cls.demand is None or key != cls.demand_key:
            try:
                # Seconds of CPU, in a child process: the hub keeps answering.
                cls.demand = trace.load_in_child(plan)
            except (OSError, ValueError) as exc:
                raise SettingError(f"demand file {plan.demand}: {exc}") from None
            cls.demand_key = key
        assert cls.demand is not None
        cls.plan = plan
        cls.pool = plan.pool(trace.peak_rpm(plan, cls.demand))

    @classmethod
    def prepare(cls, environment: Environment) -> bool:
        """Master or local process, as a run starts: the plan resolved and checked
        against the server. False (and the test stopping) when a setting cannot work."""
        if cls.prepared:
            return True
        Stop.reset(environment)
        try:
            plan = cls.resolve(environment)
            cls.use(plan)
            preflight.check(environment.host, plan)
            if isinstance(environment.runner, MasterRunner):
                Workers.read(environment.runner, plan)
        except SettingError as exc:
            Stop.now(environment, str(exc))
            return False
        if Stop.line is not None:  # a worker could not take the plan
            return False
        assert environment.parsed_options is not None
        environment.parsed_options.coop_resolved = plan.to_json()
        cls.prepared = True
        cls.started_at = datetime.now(UTC)
        cls.ended_at = None
        logger.info(
            "run %s: %d drivers, %s, surge × %g, %g s; up to %d rider phones "
            "(the rollout's shape starts the users: -u and -r are not used)",
            plan.run_id,
            plan.drivers,
            f"the demand file's rate × {plan.speedup:g}"
            if plan.trace
            else f"{plan.requests_per_minute:g} requests/min",
            plan.surge_factor,
            plan.total_s,
            cls.pool,
        )
        return True

    @classmethod
    def elapsed_s(cls) -> float:
        if cls.started is None:
            cls.started = time.monotonic()
        return time.monotonic() - cls.started


class Workers:
    """Distributed: before the first user starts, the master sends the plan to every
    worker and waits until each has read its demand file (seconds of CPU), so no worker
    starts its phones late, or misses its heartbeats while the rollout runs."""

    loaded: set[str] = set()
    run_id: str | None = None

    @classmethod
    def read(cls, runner: MasterRunner, plan: LoadPlan) -> None:
        cls.loaded, cls.run_id = set(), plan.run_id
        runner.send_message(PLAN_MESSAGE, {"plan": plan.to_json()})
        deadline = time.monotonic() + WORKERS_READY_WAIT_S
        while len(cls.loaded) < runner.worker_count and Stop.line is None:
            if time.monotonic() > deadline:
                raise SettingError(
                    f"{runner.worker_count - len(cls.loaded)} of {runner.worker_count} "
                    f"workers did not read the demand file within {WORKERS_READY_WAIT_S:g} s"
                )
            gevent.sleep(0.2)

    @classmethod
    def on_loaded(cls, msg: Any, **_: Any) -> None:
        if msg.data.get("run_id") == cls.run_id:
            cls.loaded.add(msg.node_id)

    @classmethod
    def on_plan(cls, environment: Environment, msg: Any, **_: Any) -> None:
        """A worker: read the plan's demand, then say so (or stop the test)."""
        Stop.reset(environment)
        plan = LoadPlan.from_json(msg.data["plan"])
        try:
            City.use(plan)
        except SettingError as exc:
            Stop.now(environment, str(exc))
            return
        assert environment.runner is not None
        environment.runner.send_message(LOADED_MESSAGE, {"run_id": plan.run_id})


@events.init.add_listener
def _init(environment: Environment, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # The plan comes from the master as each run starts (Workers).
        runner.register_message(PLAN_MESSAGE, Workers.on_plan, concurrent=True)
        return
    try:
        plan = City.resolve(environment)
        if environment.web_ui is None:
            # Headless: the server is the one the run will use; a token it refuses
            # stops here, before seconds of reading the demand file.
            preflight.check(environment.host, plan)
        City.use(plan)
    except SettingError as exc:  # a setting that cannot work: exit now
        logger.error("stopped: %s", exc)
        sys.exit(2)
    if isinstance(runner, MasterRunner):
        runner.register_message(ABORT_MESSAGE, _on_worker_stop)
        runner.register_message(LOADED_MESSAGE, Workers.on_loaded)
    if environment.web_ui is not None:
        _extend_web_ui(environment)
    parsed = environment.parsed_options
    if parsed is not None and parsed.coop_progress:
        gevent.spawn(Progress.loop, environment)


@events.test_start.add_listener
def _start(environment: Environment, **_: Any) -> None:
    if _is_worker(environment):
        parsed = environment.parsed_options
        text = getattr(parsed, "coop_resolved", "") if parsed is not None else ""
        try:
            City.use(LoadPlan.from_json(text) if text else City.resolve(environment))
        except SettingError as exc:
            Stop.now(environment, str(exc))
    else:
        Live.start(environment)
    City.started = time.monotonic()


@events.test_stop.add_listener
def _test_stop(environment: Environment, **_: Any) -> None:
    if _is_worker(environment) or not City.prepared:
        return
    City.prepared = False
    plan = City.plan
    now = datetime.now(UTC)
    if plan is not None and City.started_at is not None:
        planned_end = City.started_at.timestamp() + plan.total_s
        City.ended_at = datetime.fromtimestamp(min(now.timestamp(), planned_end), UTC)
    Live.stop()


@events.quitting.add_listener
def _quitting(environment: Environment, **_: Any) -> None:
    if _is_worker(environment) or City.plan is None or City.started_at is None:
        return
    Progress.write(environment)
    if Stop.line is not None:
        return
    try:
        summary = Live.summary(environment)
    except Exception as exc:  # the KPIs need the server's database
        logger.warning("no KPI summary: %s", exc or type(exc).__name__)
        return
    logger.info("%s", kpi.headline(summary))
    verdict = "PASS" if summary["passed"] else "FAIL: " + "; ".join(summary["missed"])
    logger.info("%s", verdict)
    parsed = environment.parsed_options
    if parsed is not None and parsed.kpi_json:
        path = Path(parsed.kpi_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if not summary["passed"] and environment.process_exit_code is None:
        environment.process_exit_code = 1


# -- the live KPIs ----------------------------------------------------------------------------


class Live:
    """The run's KPIs as the server records them, read every ``KPI_EVERY_S``."""

    trips: dict[str, Any] | None = None
    supply: dict[str, int] | None = None
    note: str | None = None
    greenlet: gevent.Greenlet | None = None

    @classmethod
    def start(cls, environment: Environment) -> None:
        cls.stop()
        cls.trips = cls.supply = cls.note = None
        cls.greenlet = gevent.spawn(cls._loop, environment)

    @classmethod
    def stop(cls) -> None:
        if cls.greenlet is not None:
            cls.greenlet.kill(block=False)
            cls.greenlet = None

    @classmethod
    def _loop(cls, environment: Environment) -> None:
        last_log = 0.0
        while True:
            gevent.sleep(KPI_EVERY_S)
            cls.refresh(environment)
            headless = environment.web_ui is None
            if headless and time.monotonic() - last_log >= 2 * KPI_EVERY_S:
                last_log = time.monotonic()
                logger.info("KPIs: %s", " | ".join(f"{k} {v}" for k, v in cls.rows()[1:]))

    @classmethod
    def refresh(cls, environment: Environment) -> None:
        plan = City.plan
        if plan is None:
            return
        try:
            cls.trips = cls.read_trips(environment, datetime.now(UTC))
            cls.note = None
        except Exception as exc:
            cls.note = f"trip KPIs need the server's database (--database-url): {exc}"
        try:
            r = httpx.get(
                f"{environment.host}/v1/operator/supply",
                params={"resolution": 0},
                headers={"Authorization": f"Bearer {plan.operator_token}"},
                timeout=5,
            )
            r.raise_for_status()
            cells = r.json()["cells"]
            cls.supply = {
                "online_drivers": sum(c["online_drivers"] for c in cells),
                "open_requests": sum(c["open_requests"] for c in cells),
            }
        except (httpx.HTTPError, KeyError, ValueError):
            cls.supply = None

    @classmethod
    def read_trips(cls, environment: Environment, ended_at: datetime) -> dict[str, Any]:
        assert City.plan is not None and environment.parsed_options is not None
        url = environment.parsed_options.database_url
        query = kpi.trip_kpis(url, run_id=City.plan.run_id, ended_at=ended_at)
        result: dict[str, Any] = gevent.get_hub().threadpool.apply(asyncio.run, (query,))
        return result

    @classmethod
    def rows(cls) -> list[tuple[str, str]]:
        """The KPI tab's rows: (what, value)."""
        plan = City.plan
        out: list[tuple[str, str]] = []
        if Stop.line is not None:
            out.append(("STOPPED", Stop.line))
        if plan is None:
            return out
        out.append(("run", f"{plan.run_id} ({plan.drivers} drivers, {plan.total_s:g} s)"))
        s = cls.supply
        out.append(("online drivers", "–" if s is None else str(s["online_drivers"])))
        out.append(("open requests", "–" if s is None else str(s["open_requests"])))
        t = cls.trips
        if t is None:
            out.append(("trips", cls.note or "–"))
            return out
        o = t["request_to_offer_s"]
        out += [
            ("requests", str(t["requests"])),
            ("matched", str(t["matched"])),
            ("completed", str(t["completed"])),
            ("expired", str(t["expired"])),
            ("request→offer p50 / p95 / p99 (s)", " / ".join(_s(o[q]) for q in PERCENTILES)),
            ("offer→accept p50 (s)", _s(t["offer_to_accept_s"]["p50"])),
        ]
        if cls.note:
            out.append(("note", cls.note))
        return out

    @classmethod
    def summary(cls, environment: Environment) -> dict[str, Any]:
        """``kpi.json`` of the current (or last) run."""
        plan, demand = City.plan, City.demand
        runner, parsed = environment.runner, environment.parsed_options
        assert plan is not None and demand is not None
        assert runner is not None and parsed is not None
        ended = City.ended_at or datetime.now(UTC)
        trips = cls.read_trips(environment, ended)
        planned = plan.planned_requests(demand.rate_rpm if plan.trace else lambda _: 0.0)
        batch_s = float(parsed.batch_s)
        thresholds = kpi.Thresholds(
            max_p99_request_to_offer_s=(
                parsed.max_p99_offer_s if parsed.max_p99_offer_s is not None else batch_s + 1.0
            ),
            max_error_rate=float(parsed.max_error_rate),
        )
        if environment.process_exit_code is not None:
            code = environment.process_exit_code
        elif runner.stats.errors or runner.exceptions:
            code = int(getattr(parsed, "exit_code_on_error", 1))
        else:
            code = 0
        return kpi.summary(
            plan=plan,
            host=environment.host or "",
            dispatch_batch_s=batch_s,
            trips=trips,
            counts=locust_counts(environment),
            locust_exit_code=code,
            planned=planned,
            thresholds=thresholds,
            generator_cpu_saturated=bool(
                runner.cpu_warning_emitted or getattr(runner, "worker_cpu_warning_emitted", False)
            ),
        )


PERCENTILES = ("p50", "p95", "p99")


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def locust_counts(environment: Environment) -> kpi.LocustCounts:
    """What ``kpi.locust_counts`` reads from the CSV files, from the statistics."""
    from locust.stats import StatsError

    assert environment.runner is not None
    stats = environment.runner.stats
    errors: Counter[str] = Counter()
    for e in stats.errors.values():
        errors[f"{e.method} {e.name}: {StatsError.parse_error(e.error)}"] += e.occurrences
    for row in environment.runner.exceptions.values():
        errors[f"exception: {str(row['msg']).strip()[:200]}"] += int(row["count"])
    return kpi.LocustCounts(
        requests=stats.total.num_requests, failures=stats.total.num_failures, errors=dict(errors)
    )


def _succeeded(environment: Environment, key: tuple[str, str]) -> int:
    assert environment.runner is not None
    entry = environment.runner.stats.entries.get((key[1], key[0]))
    return 0 if entry is None else entry.num_requests - entry.num_failures


# -- progress for `coopride loadtest` --------------------------------------------------------


class Progress:
    """The master's view of the run, written each second to ``--coop-progress`` (a JSON
    file ``coopride loadtest`` draws its progress bars from)."""

    @classmethod
    def loop(cls, environment: Environment) -> None:
        while True:
            cls.write(environment)
            gevent.sleep(PROGRESS_EVERY_S)

    @classmethod
    def write(cls, environment: Environment) -> None:
        parsed = environment.parsed_options
        if parsed is None or not parsed.coop_progress or environment.runner is None:
            return
        plan = City.plan
        state = {
            "state": environment.runner.state,
            "elapsed_s": None if City.started is None else City.elapsed_s(),
            "total_s": None if plan is None else plan.total_s,
            "drivers": None if plan is None else plan.drivers,
            "drivers_admitted": _succeeded(environment, ADMIT),
            "rider_pool": City.pool,
            "riders_signed_up": _succeeded(environment, SIGN_UP),
            "kpis": dict(Live.rows()),
            "stopped": Stop.line,
        }
        path = Path(parsed.coop_progress)
        part = path.with_suffix(".part")
        part.write_text(json.dumps(state))
        part.replace(path)


# -- the web UI -------------------------------------------------------------------------------


def _extend_web_ui(environment: Environment) -> None:
    """A "Dispatch KPIs" tab beside Locust's statistics (Locust's extended tabs: rows
    ride along with each ``/stats/requests`` poll), and ``/coop/kpi.json``."""
    from flask import Response, jsonify, request

    ui = environment.web_ui
    assert ui is not None and ui.app is not None
    app = ui.app
    ui.template_args["extended_tabs"] = [{"title": "Dispatch KPIs", "key": KPI_TAB}]
    ui.template_args["extended_tables"] = [
        {
            "key": KPI_TAB,
            "structure": [
                {"key": "kpi", "title": "Dispatch KPI (the server's record of this run)"},
                {"key": "value", "title": "Value"},
            ],
        }
    ]
    ui.template_args["extended_csv_files"] = [
        {"href": "./coop/kpi.json", "title": "Download the dispatch KPI summary (kpi.json)"}
    ]

    @app.after_request
    def _with_kpis(response: Response) -> Response:
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        data = response.get_json(silent=True)
        if isinstance(data, dict):
            rows = [{"kpi": k, "value": v} for k, v in Live.rows()]
            data["extended_stats"] = [{"key": KPI_TAB, "data": rows}]
            response.set_data(json.dumps(data))
        return response

    @app.route("/coop/kpis")
    def _kpis() -> Response:
        return jsonify({"stopped": Stop.line, "rows": dict(Live.rows()), "trips": Live.trips})

    @app.route("/coop/kpi.json")
    def _kpi_json() -> Response | tuple[Response, int]:
        if City.plan is None or City.started_at is None:
            return jsonify({"error": "no run yet"}), 404
        try:
            return jsonify(Live.summary(environment))
        except Exception as exc:
            return jsonify({"error": f"the KPIs need the server's database: {exc}"}), 503
