"""Every plan setting as an option with its environment variable, and the checks that stop
a setting that cannot work in one line; plain Python, no Locust and no server
(``loadtests.options``, ``loadtests.preflight``, ``python -m loadtests``)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import httpx
import pytest

from loadtests import __main__ as cli
from loadtests import options, preflight
from loadtests.options import OPTIONS, SettingError
from loadtests.plan import LoadPlan


def test_every_plan_field_is_an_option_with_its_variable() -> None:
    assert {o.field for o in OPTIONS} == {f.name for f in fields(LoadPlan)}
    by_field = options.BY_FIELD
    assert by_field["operator_token"].variable == "COOP_OPERATOR_TOKEN"
    assert by_field["offer_timeout_s"].variable == "COOP_OFFER_TIMEOUT_S"
    assert by_field["drivers"].variable == "COOPRIDE_DRIVERS"


def test_the_command_line_wins_over_the_environment_over_the_json_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COOPRIDE_DRIVERS", "12")
    monkeypatch.setenv("COOPRIDE_TRACE", "true")
    base = {"drivers": 7, "surge_factor": 3.0, "cancel_rate": 0.1}
    given = {o.field: options.from_environment(o) for o in OPTIONS if not o.secret}
    plan = options.build(given, base)
    assert (plan.drivers, plan.trace, plan.surge_factor, plan.cancel_rate) == (12, True, 3.0, 0.1)
    plan = options.build({**given, "drivers": 20, "human_delay_s": "1,2"}, base)
    assert plan.drivers == 20 and plan.human_delay_s == (1.0, 2.0)
    assert plan.run_id.startswith("lt-")  # none given: one of its own


def test_coopride_loadtest_hands_locust_the_same_options() -> None:
    """``coopride loadtest`` passes the plan to the locustfile as these options; read back
    by the same option table, they make the same plan (the token travels in the
    environment, never on the command line)."""
    plan = LoadPlan(
        duration_s=45,
        hold_s=20,
        drivers=8,
        trace=True,
        speedup=2,
        human_delay_s=(0.25, 1.5),
        rider_pool=9,
        run_id="lt-same",
        operator_token="s3cret",
    )
    argv = options.locust_arguments(plan)
    assert "s3cret" not in argv and "--operator-token" not in argv
    args = cli.parser(given_only=True).parse_args(argv)
    again = options.build(vars(args))
    assert again == plan.with_(operator_token=again.operator_token)


def test_every_loadtest_flag_says_its_default() -> None:
    """Shown by the formatter (``(default: 50)``) or, when it is worked out at run time,
    said in the help itself."""
    parser = cli.parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        said = formatter._get_help_string(action) or ""
        assert "%(default)s" in said or "default" in said or "(" in said, action.option_strings


@pytest.mark.parametrize(
    ("given", "line"),
    [
        ({"demand": "/nowhere/demand.csv.gz"}, "demand file /nowhere/demand.csv.gz not found"),
        ({"drivers": "many"}, "--drivers 'many'"),
        ({"decline_rate": 1.5}, "bad plan: decline_rate must be in [0, 1)"),
    ],
)
def test_a_setting_that_cannot_work_is_one_line(given: dict[str, object], line: str) -> None:
    with pytest.raises(SettingError) as refused:
        options.build(given)
    assert line in str(refused.value) and "\n" not in str(refused.value)


def test_a_bad_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COOPRIDE_DRIVERS", "lots")
    with pytest.raises(SettingError, match="COOPRIDE_DRIVERS='lots'"):
        options.from_environment(options.BY_FIELD["drivers"])


def test_a_json_plan_is_text_or_a_file(tmp_path: Path) -> None:
    assert options.read_base('{"drivers": 3}') == {"drivers": 3}
    (tmp_path / "city.json").write_text(json.dumps({"drivers": 4}))
    assert options.read_base(str(tmp_path / "city.json")) == {"drivers": 4}
    with pytest.raises(SettingError, match="not found"):
        options.read_base(str(tmp_path / "missing.json"))


def _server(
    *, token: str = "right", title: str = "coopride", areas: int = 0
) -> tuple[httpx.MockTransport, list[str]]:
    made: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/readyz":
            return httpx.Response(200, json={"status": "ready"})
        if path == "/openapi.json":
            return httpx.Response(200, json={"info": {"title": title}})
        if path == preflight.SERVICE_AREAS:
            if request.headers.get("Authorization") != f"Bearer {token}":
                return httpx.Response(401, json={"title": "unauthorized"})
            if request.method == "POST":
                made.append(json.loads(request.content)["name"])
                return httpx.Response(201, json={})
            return httpx.Response(200, json=[{}] * areas)
        return httpx.Response(404)

    return httpx.MockTransport(answer), made


def test_a_refused_operator_token_is_one_line_naming_the_setting() -> None:
    transport, _ = _server()
    with pytest.raises(SettingError) as refused:
        preflight.check("http://127.0.0.1:9", LoadPlan(operator_token="wrong"), transport=transport)
    assert str(refused.value) == (
        "the operator token is refused by http://127.0.0.1:9 (401): give the server's "
        "COOP_OPERATOR_TOKEN as --operator-token or in COOP_OPERATOR_TOKEN"
    )


def test_a_server_that_is_not_coopride_is_refused() -> None:
    transport, _ = _server(title="someone else")
    with pytest.raises(SettingError, match="is not a coopride server"):
        preflight.check("http://127.0.0.1:9", LoadPlan(operator_token="right"), transport=transport)


def test_the_manhattan_area_is_made_only_when_the_server_has_none() -> None:
    transport, made = _server()
    preflight.check("http://127.0.0.1:9", LoadPlan(operator_token="right"), transport=transport)
    assert made == ["Manhattan (load test)"]
    transport, made = _server(areas=1)
    preflight.check("http://127.0.0.1:9", LoadPlan(operator_token="right"), transport=transport)
    assert made == []


def test_the_sign_up_limit_line_says_what_to_set() -> None:
    line = preflight.signup_limited(120)
    assert "COOP_SIGNUP_RATE_PER_MIN=240" in line and "120 rider phones" in line
