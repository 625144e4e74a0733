"""Every load-plan setting as a command-line option, with an environment variable as its
default: one table for ``coopride loadtest`` (argparse, ``loadtests/__main__.py``) and for
plain ``locust -f loadtests/locustfile.py`` (Locust's parser, where the options also show
in the web UI's start form). Plain Python, no Locust.

A value is taken, first found first: the command line (or the web UI's form), the
option's environment variable, the JSON plan (``--config`` / ``--coop-plan``), the
``LoadPlan`` default. The server's own settings keep their server names
(``COOP_OPERATOR_TOKEN``, ``COOP_OFFER_TIMEOUT_S``, read from ``.env`` too, as the server
reads them); the load test's are ``COOPRIDE_<FIELD>`` (``COOPRIDE_DRIVERS``).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from loadtests.plan import LoadPlan

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


class SettingError(ValueError):
    """A setting that cannot work; its message is the one line the operator reads."""


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE:
        return True
    if word in FALSE:
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def _pair(text: str) -> tuple[float, float]:
    lo, hi = (float(part) for part in text.replace(" ", "").split(","))
    if lo > hi:
        raise ValueError(f"{text!r}: the low end is above the high end")
    return (lo, hi)


def _optional(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.strip() == "" else kind(text)

    return parse


@dataclass(frozen=True)
class PlanOption:
    field: str  # the LoadPlan field, also the option's dest
    flag: str
    help: str
    parse: Callable[[str], Any]  # a string (environment, web form) to the field's value
    env: str = ""  # default: COOPRIDE_<FIELD>
    secret: bool = False
    choices: tuple[str, ...] | None = None
    server_setting: str | None = None  # a core.settings.Settings field with the same value

    @property
    def variable(self) -> str:
        return self.env or f"COOPRIDE_{self.field.upper()}"

    @property
    def is_bool(self) -> bool:
        return self.parse is _bool


OPTIONS: tuple[PlanOption, ...] = (
    PlanOption(
        "duration_s",
        "--duration",
        "rollout length in seconds (plain locust: -t/--run-time when this is not given)",
        float,
    ),
    PlanOption(
        "driver_ramp_s", "--driver-ramp-s", "phase, s (0.15 × the duration)", _optional(float)
    ),
    PlanOption(
        "rider_ramp_s", "--rider-ramp-s", "phase, s (0.15 × the duration)", _optional(float)
    ),
    PlanOption("hold_s", "--hold-s", "phase, s (0.5 × the duration)", _optional(float)),
    PlanOption("surge_s", "--surge-s", "phase, s (0.2 × the duration)", _optional(float)),
    PlanOption("drivers", "--drivers", "online drivers at the target", int),
    PlanOption(
        "requests_per_minute", "--requests-per-minute", "base arrival rate (without --trace)", float
    ),
    PlanOption("surge_factor", "--surge-factor", "surge rate = base rate × this", float),
    PlanOption("trace", "--trace", "replay the demand file's own rate (× --speedup)", _bool),
    PlanOption("speedup", "--speedup", "trace replay speed (× real time)", float),
    PlanOption("demand", "--demand", "demand file (see data/README.md)", str),
    PlanOption(
        "trace_start",
        "--trace-start",
        "local time in the demand file where the replay starts (the busiest hours)",
        _optional(str),
    ),
    PlanOption(
        "area",
        "--area",
        "manhattan: trips inside the demo's area (created if the server has none); all",
        str,
        choices=("manhattan", "all"),
    ),
    PlanOption(
        "rider_pool",
        "--rider-pool",
        "rider phones (from the peak rate when not given)",
        _optional(int),
    ),
    PlanOption("location_every_s", "--location-every-s", "a driver's location interval, s", float),
    PlanOption(
        "human_delay_s", "--human-delay-s", "a driver's answer to an offer takes LO,HI s", _pair
    ),
    PlanOption("boarding_s", "--boarding-s", "boarding at the pickup takes LO,HI s", _pair),
    PlanOption("decline_rate", "--decline-rate", "share of offers drivers decline", float),
    PlanOption("drive_speedup", "--drive-speedup", "drivers move this many × street speed", float),
    PlanOption("cancel_rate", "--cancel-rate", "share of trips riders cancel", float),
    PlanOption(
        "cancel_within_s", "--cancel-within-s", "a cancelling rider gives up within this, s", float
    ),
    PlanOption(
        "offer_timeout_s",
        "--offer-timeout-s",
        "the server's offer lifetime, s",
        float,
        env="COOP_OFFER_TIMEOUT_S",
        server_setting="offer_timeout_s",
    ),
    PlanOption(
        "operator_token",
        "--operator-token",
        "the server's operator token (its COOP_OPERATOR_TOKEN)",
        str,
        env="COOP_OPERATOR_TOKEN",
        secret=True,
        server_setting="operator_token",
    ),
    PlanOption(
        "run_id",
        "--run-id",
        "riders sign up under this name, which is how the KPIs find the run (lt-<random>)",
        _optional(str),
    ),
    PlanOption("seed", "--seed", "seed of the demand's drawn drop-offs", int),
)
BY_FIELD = {o.field: o for o in OPTIONS}
assert set(BY_FIELD) == {f.name for f in fields(LoadPlan)}, "an option for every plan field"

# The server settings the load test reads too (defaults for the options above, the KPI
# reader's database and the threshold's dispatch window).
SERVER_SETTINGS = ("operator_token", "offer_timeout_s", "database_url", "dispatch_batch_s")


def server_defaults() -> dict[str, Any]:
    """The server's settings as the server would read them here (environment, then
    ``.env``, then its defaults); nothing when they do not validate."""
    from core.settings import Settings

    try:
        settings = Settings()
    except ValueError:
        return {}
    return {name: getattr(settings, name) for name in SERVER_SETTINGS}


def from_environment(option: PlanOption) -> Any:
    """The option's variable, parsed; None when unset."""
    raw = os.environ.get(option.variable)
    if raw is None or (raw.strip() == "" and not option.is_bool):
        return None
    try:
        return option.parse(raw)
    except ValueError as exc:
        raise SettingError(f"{option.variable}={raw!r}: {exc}") from None


def default(option: PlanOption, server: Mapping[str, Any] | None = None) -> Any:
    """What the option is when not given: its variable, the server's setting, the
    plan's default."""
    value = from_environment(option)
    if value is not None or option.field == "run_id":
        return value  # a run without an id gets a new one each time it starts
    if option.server_setting and server and option.server_setting in server:
        return server[option.server_setting]
    return getattr(LoadPlan(), option.field)


def shown(value: Any) -> str:
    """A value as the command line takes it."""
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def read_base(text: str) -> dict[str, Any]:
    """``--config`` / ``--coop-plan``: a JSON object of plan fields, or a file of one."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise SettingError(f"plan file {text} not found")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingError(f"the plan is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SettingError("the plan must be a JSON object of LoadPlan fields")
    return data


def build(given: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> LoadPlan:
    """The plan: ``base`` (the JSON plan), with every field in ``given`` that is not None
    over it. A string (from the environment or a web form) is parsed as the option's
    type. Raises ``SettingError`` with one line for a value that cannot work."""
    values: dict[str, Any] = dict(base or {})
    for option in OPTIONS:
        value = given.get(option.field)
        if isinstance(value, str) and option.parse is not str:
            try:
                value = option.parse(value)
            except ValueError as exc:
                raise SettingError(f"{option.flag} {value!r}: {exc}") from None
        if value is not None:
            values[option.field] = value
    if not values.get("run_id"):
        values["run_id"] = f"lt-{secrets.token_hex(4)}"
    try:
        plan = LoadPlan.from_mapping(values)
    except (ValueError, TypeError) as exc:
        raise SettingError(f"bad plan: {exc}") from None
    if not Path(plan.demand).is_file():
        raise SettingError(
            f"demand file {plan.demand} not found: give --demand PATH (or COOPRIDE_DEMAND); "
            "the default is data/nyc_uber_pickups_2014-04.csv.gz in the data folder "
            "(COOP_DATA_DIR)"
        )
    return plan


def locust_arguments(plan: LoadPlan) -> list[str]:
    """The plan as Locust options of ``loadtests/locustfile.py``, every field but the
    operator token (a secret: ``COOP_OPERATOR_TOKEN`` in the environment carries it)."""
    args: list[str] = []
    for option in OPTIONS:
        value = getattr(plan, option.field)
        if option.secret or value is None:
            continue
        if option.is_bool:
            args.append(option.flag if value else f"--no-{option.flag[2:]}")
        else:
            args += [option.flag, shown(value)]
    return args
