"""The locustfile run the way a Locust user runs it: plain ``locust`` against a running
server, headless, and as a master with one worker on loopback (its web UI showing the
dispatch KPIs live); and a setting that cannot work (a wrong operator token) stopping
the test at once, in one line.

One server for the module (two api processes and a dispatcher, a database and a Redis
prefix of its own, as ``coopride loadtest`` starts it), with the operator token and the
database in the environment, as ``docs/loadtesting.md`` tells an operator to set them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from loadtests.run import LOCUSTFILE, ROOT, Target, started_server
from server import harness
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

# As the existing 30-s smoke (test_smoke.py): the demand file's real rate, drivers who
# decline and riders who cancel some, trips compressed to finish inside the run. -u and
# -r are what a Locust user types; the rollout's shape sets the users instead.
SMOKE = [
    *("-t", "30s", "-u", "40", "-r", "10"),
    *("--drivers", "8", "--trace", "--speedup", "1"),
    *("--decline-rate", "0.2", "--cancel-rate", "0.2", "--drive-speedup", "300"),
    *("--max-p99-offer-s", "20"),
]
# Master and worker: the worker reads the demand file as the test starts (seconds of CPU,
# in a child process), on the master's clock; on a busy CI machine one 30-s run replayed
# only 4 trips. 60 s leaves the replay time to reach the smoke's minimum under load.
SMOKE_DISTRIBUTED = [*("-t", "60s"), *SMOKE[2:]]
RUN_TIMEOUT_S = 60 + 150
# Reading the demand file and asking the server once, nothing more.
FAIL_FAST_S = 30.0
TOKEN_LINE = "the operator token is refused by"


@pytest.fixture(scope="module")
@starts_server
def target(test_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    base = test_settings.model_copy(update={"dispatch_batch_s": 1.0})
    out = tmp_path_factory.mktemp("locust-server")
    with started_server(base, api_workers=2, batch_s=1.0, out=out) as t:
        yield t


def _environment(target: Target, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COOPRIDE_")}
    env.update(
        {
            "COOP_OPERATOR_TOKEN": target.settings.operator_token,
            "COOP_DATABASE_URL": target.settings.database_url,
            "COOP_DISPATCH_BATCH_S": str(target.settings.dispatch_batch_s),
            **changes,
        }
    )
    return env


def _locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def _said(out: Path) -> str:
    return out.read_text(errors="replace")[-4000:] if out.exists() else ""


def _check_clean_run(summary: dict[str, object], stats_csv: Path, said: str) -> None:
    assert summary["requests"] >= 5, said  # type: ignore[operator]
    assert summary["matched"] >= 3, said  # type: ignore[operator]
    assert summary["errors"] == {}, said
    assert summary["locust"]["failures"] == 0, said  # type: ignore[index]
    assert summary["passed"] is True, said
    with stats_csv.open(newline="") as f:
        stats = {(row["Type"], row["Name"]): row for row in csv.DictReader(f)}
    admitted = stats[("POST", "/v1/drivers [admit]")]
    assert (admitted["Request Count"], admitted["Failure Count"]) == ("8", "0")
    assert int(stats[("POST", "/v1/trips")]["Request Count"]) >= 5
    assert int(stats[("", "Aggregated")]["Failure Count"]) == 0


def test_plain_locust_headless_runs_the_smoke_without_a_failure(
    target: Target, tmp_path: Path
) -> None:
    run = subprocess.run(
        _locust(
            "--headless",
            "--host",
            target.base_url,
            *SMOKE,
            "--csv",
            str(tmp_path / "locust"),
            "--kpi-json",
            str(tmp_path / "kpi.json"),
        ),
        env=_environment(target),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    said = run.stderr[-4000:]
    assert run.returncode == 0, said
    summary = json.loads((tmp_path / "kpi.json").read_text())
    # -t 30s is the rollout's length when --duration is not given.
    assert summary["plan"]["duration_s"] == 30
    _check_clean_run(summary, tmp_path / "locust_stats.csv", said)
    assert "coopride: PASS" in run.stderr


def test_a_master_and_one_worker_run_it_with_the_kpis_live_in_the_web_ui(
    target: Target, tmp_path: Path
) -> None:
    bind, web = harness.free_port(), harness.free_port()
    env = _environment(target)
    master_out, worker_out = tmp_path / "master.out", tmp_path / "worker.out"
    with master_out.open("wb") as m_log, worker_out.open("wb") as w_log:
        master = subprocess.Popen(
            _locust(
                "--master",
                *("--master-bind-host", "127.0.0.1", "--master-bind-port", str(bind)),
                *("--expect-workers", "1", "--autostart", "--autoquit", "2"),
                *("--web-host", "127.0.0.1", "--web-port", str(web)),
                *("--host", target.base_url),
                *SMOKE_DISTRIBUTED,
                *("--csv", str(tmp_path / "locust"), "--kpi-json", str(tmp_path / "kpi.json")),
            ),
            env=env,
            cwd=ROOT,
            stdout=m_log,
            stderr=subprocess.STDOUT,
        )
        worker = subprocess.Popen(
            _locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(bind)),
            env=env,
            cwd=ROOT,
            stdout=w_log,
            stderr=subprocess.STDOUT,
        )
        try:
            live = _kpis_while_running(f"http://127.0.0.1:{web}", master)
            master_rc = master.wait(RUN_TIMEOUT_S)
            worker_rc = worker.wait(60)
        finally:
            harness.stop(master)
            harness.stop(worker)
    said = _said(master_out) + _said(worker_out)
    # The "Dispatch KPIs" tab, read as the page reads it: matched trips while it ran.
    assert int(live["requests"]) >= 1 and int(live["matched"]) >= 1, live
    assert int(live["online drivers"]) >= 1, live
    assert (master_rc, worker_rc) == (0, 0), said
    summary = json.loads((tmp_path / "kpi.json").read_text())
    _check_clean_run(summary, tmp_path / "locust_stats.csv", said)
    assert "failed to send heartbeat" not in said


def _kpis_while_running(ui: str, master: subprocess.Popen[bytes]) -> dict[str, str]:
    """The KPI rows riding on ``/stats/requests``, once a trip has been matched."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    rows: dict[str, str] = {}
    while time.monotonic() < deadline and master.poll() is None:
        try:
            stats = httpx.get(f"{ui}/stats/requests", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            stats = {}
        for tab in stats.get("extended_stats", []):
            if tab["key"] == "coop-kpis":
                rows = {row["kpi"]: row["value"] for row in tab["data"]}
        if rows.get("matched", "0") not in ("0", "–"):
            return rows
        time.sleep(1)  # polling another process's page, bounded by the deadline
    return rows


def test_a_wrong_operator_token_stops_the_test_at_once_in_one_line(
    target: Target, tmp_path: Path
) -> None:
    started = time.monotonic()
    run = subprocess.run(
        _locust(
            "--headless",
            "--host",
            target.base_url,
            *SMOKE,
            "--csv",
            str(tmp_path / "locust"),
        ),
        env=_environment(target, COOP_OPERATOR_TOKEN="change-me"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    took = time.monotonic() - started
    said = run.stderr
    assert run.returncode == 2, said[-3000:]
    assert took < FAIL_FAST_S, took
    lines = [line for line in said.splitlines() if TOKEN_LINE in line]
    assert len(lines) == 1, said[-3000:]
    assert lines[0].endswith(
        "give the server's COOP_OPERATOR_TOKEN as --operator-token or in COOP_OPERATOR_TOKEN"
    )
    # Not one driver was admitted, nor retried.
    with (tmp_path / "locust_stats.csv").open(newline="") as f:
        names = [row["Name"] for row in csv.DictReader(f)]
    assert "/v1/drivers [admit]" not in names

    # `coopride loadtest` against the same server says the same line, before Locust.
    cli = harness.run(
        [
            *("loadtest", "--host", target.base_url, "--operator-token", "change-me"),
            *("--out", str(tmp_path / "cli")),
        ],
        target.settings,
        timeout_s=60,
    )
    assert cli.returncode == 2
    assert cli.stderr.strip().splitlines() == [f"[loadtest] stopped: {lines[0].split(': ', 2)[-1]}"]
