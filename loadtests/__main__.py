"""``python -m loadtests``, which ``coopride loadtest`` hands over to: a bounded city
rollout under Locust (``docs/loadtesting.md``).

A program of its own, so that the service (``server``) never imports the load test: the
``coopride`` command only replaces itself with this one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from core.settings import get_settings
from loadtests import options
from loadtests.capacity import find_capacity
from loadtests.kpi import Thresholds
from loadtests.options import OPTIONS, SettingError
from loadtests.plan import LoadPlan
from loadtests.run import ROOT, Target, local_only, one_run, started_server


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's help with its default; an option whose default is worked out at run
    time (None here) says how in its help instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def add_arguments(p: argparse.ArgumentParser, *, given_only: bool = False) -> None:
    """``coopride loadtest``'s options. ``given_only``: every default is left out, so
    the parsed namespace holds only what the command line said."""

    def add(*flags: str, **kwargs: Any) -> None:
        if given_only:
            kwargs["default"] = argparse.SUPPRESS
        p.add_argument(*flags, **kwargs)

    add("--config", help="JSON file of plan settings, LoadPlan field names (default: none)")
    add("--host", help="target a running server, 127.0.0.1 only (default: start one)")
    add("--api-workers", type=int, default=1, help="api processes of the started server")
    add(
        "--batch-s",
        type=float,
        help="the started server's dispatch window, s (default: COOP_DISPATCH_BATCH_S)",
    )
    add("--processes", type=int, default=1, help="Locust processes (-1: one per core)")
    add("--out", help="output directory (default: artifacts/loadtest-<UTC time>)")
    add("--ui", action="store_true", default=False, help="run Locust's web UI (on 127.0.0.1)")
    for option in OPTIONS:
        kwargs: dict[str, Any] = {
            "dest": option.field,
            "help": f"{option.help} [{option.variable}]",
        }
        if option.secret:
            kwargs["help"] += " (default: the started server's own; with --host, the variable)"
            kwargs["default"] = None
        elif option.field == "run_id":
            kwargs["default"] = None
        else:
            value = options.default(option)
            kwargs["default"] = (
                value
                if isinstance(value, int | float | bool)
                else (None if value is None else options.shown(value))
            )
        if option.is_bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.parse in (int, float):
            kwargs["type"] = option.parse
        if option.choices:
            kwargs["choices"] = option.choices
        add(option.flag, **kwargs)
    add(
        "--max-p99-offer-s",
        type=float,
        help="threshold: p99 request→offer, s (default: the dispatch window + 1 s)",
    )
    add(
        "--max-error-rate",
        type=float,
        default=0.0,
        help="threshold: failed ÷ all Locust requests",
    )
    add(
        "--find-capacity",
        action="store_true",
        default=False,
        help="step the city up until a step misses a threshold; the headline table",
    )
    add("--steps", help="capacity steps DRIVERS:RPM,... (default: geometric from --start-rpm)")
    add("--start-rpm", type=float, default=20.0, help="capacity: the first step's rate")
    add("--drivers-per-rpm", type=float, default=2.5, help="capacity: drivers per request/min")
    add("--max-steps", type=int, default=8, help="capacity: steps at most")


def parser(*, given_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="coopride loadtest",
        description="a city rollout under Locust, bounded in time (docs/loadtesting.md)",
        formatter_class=Help,
        add_help=not given_only,
    )
    add_arguments(p, given_only=given_only)
    return p


def build_plan(given: dict[str, Any], config: str | None) -> LoadPlan:
    """The plan: the command line, over the environment, over ``--config``, over the
    plan's defaults (``loadtests/options.py``)."""
    base = options.read_base(Path(config).read_text()) if config else {}
    values = {o.field: options.from_environment(o) for o in OPTIONS if not o.secret}
    values.update({o.field: given[o.field] for o in OPTIONS if o.field in given})
    return options.build(values, base)


def main(args: argparse.Namespace, given: dict[str, Any]) -> int:
    base = get_settings()
    try:
        plan = build_plan(given, args.config)
    except (SettingError, OSError) as exc:
        print(f"[loadtest] bad plan: {exc}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else ROOT / "artifacts" / f"loadtest-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def target() -> Iterator[Target]:
        if args.host:
            token = args.operator_token or base.operator_token
            yield Target(
                local_only(args.host), base.model_copy(update={"operator_token": token}), []
            )
        else:
            with started_server(
                base, api_workers=args.api_workers, batch_s=args.batch_s, out=out
            ) as t:
                yield t

    try:
        with target() as t:
            plan = plan.with_(
                operator_token=t.settings.operator_token,
                offer_timeout_s=t.settings.offer_timeout_s,
            )
            th = Thresholds(
                max_p99_request_to_offer_s=(
                    args.max_p99_offer_s
                    if args.max_p99_offer_s is not None
                    else t.settings.dispatch_batch_s + 1.0
                ),
                max_error_rate=args.max_error_rate,
            )
            if args.find_capacity:
                return find_capacity(t, plan, out, args, th)
            summary = one_run(t, plan, out, thresholds=th, ui=args.ui, processes=args.processes)
            return 0 if summary["passed"] else 1
    except SettingError as exc:
        # A setting that cannot work: one line, what to set.
        print(f"[loadtest] stopped: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError, asyncpg.PostgresError, httpx.HTTPError) as exc:
        print(f"[loadtest] run failed: {exc}", file=sys.stderr)
        return 2


def cli(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    given = vars(parser(given_only=True).parse_args(argv))
    return main(args, given)


if __name__ == "__main__":
    sys.exit(cli())
