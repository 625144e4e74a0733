"""The package as a co-op's engineer installs it: ``python -m build`` makes a wheel, a new
virtualenv takes it with ``pip install``, and from outside the checkout ``coopride
migrate`` and ``coopride serve`` give a working backend: the dashboard, the API docs and a
whole trip, with the data read from the wheel's own copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.data import DataFile
from core.settings import Settings
from server.harness import ROOT, Server, free_port, start, stop, wait_ready
from tests.fixtures.isolated import isolated_database
from tests.fixtures.phones import CHELSEA, MIDTOWN, NEAR_MIDTOWN, new_driver, new_rider, open_socket

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
    )
    (path,) = out.glob("coopride-*.whl")
    return path


def test_the_wheel_carries_the_dashboard_migrations_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "server/static/ops/index.html" in names
    assert any(n.startswith("server/static/ops/assets/") and n.endswith(".js") for n in names)
    assert {"migrations/alembic.ini", "migrations/env.py"} <= names
    assert any(n.startswith("migrations/versions/0001_") for n in names)
    data = {n.rsplit("/", 1)[-1] for n in names if "/share/coopride/data/" in n}
    assert {file.value for file in DataFile} | {"README.md"} <= data
    assert "dispatch/presence/lua/location.lua" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel and its dependencies from the package index; its
    ``bin`` folder."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
        # A checkout on PYTHONPATH would make pip think coopride is installed already.
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return venv / "bin"


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder away from the checkout, with nothing on the import path: the
    installed package is all there is."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    work = tmp_path / "elsewhere"
    work.mkdir()
    return work


def _installed_run(bin_dir: Path, cwd: Path, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        cwd=cwd,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def installed_server(installed: Path, outside: Path, test_settings: Settings) -> Iterator[Server]:
    with isolated_database(test_settings.database_url, "wheel") as url:
        settings = test_settings.model_copy(update={"database_url": url})
        _installed_run(installed, outside, "coopride", "migrate", env={"COOP_DATABASE_URL": url})
        port = free_port()
        process = start(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            settings,
            outside / "serve.log",
            program=[str(installed / "coopride")],
            cwd=outside,
        )
        server = Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", settings, process)
        try:
            wait_ready(server.base_url, [process])
            yield server
        finally:
            stop(process.popen)


def test_the_installed_package_reads_its_own_copy_of_the_data(
    installed: Path, outside: Path
) -> None:
    where = _installed_run(
        installed,
        outside,
        "python",
        "-c",
        "import json, core.data as d; print(json.dumps([str(d.data_dir()), d.__file__]))",
        env={},
    )
    data_dir, module = json.loads(where)
    assert Path(data_dir) == installed.parent / "share" / "coopride" / "data"
    assert str(ROOT) not in module and "site-packages" in module


async def test_pip_install_migrate_and_serve_give_the_dashboard_docs_and_a_whole_trip(
    installed_server: Server,
) -> None:
    server = installed_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        ops = await http.get("/ops")
        assert ops.status_code == 200 and "<script" in ops.text, ops.text[:200]
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/openapi.json")).json()["info"]["title"]

        driver_id, driver_token = await new_driver(http, server)
        _, rider_auth = await new_rider(http)
        driver_auth = {"Authorization": f"Bearer {driver_token}"}
        async with open_socket(server, "/v1/drivers/ws", driver_token) as driver:
            assert (await driver.call({"type": "status", "status": "online"}))["type"] == "ok"
            assert (await driver.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
            r = await http.post(
                "/v1/trips",
                json={"pickup": MIDTOWN, "dropoff": CHELSEA},
                headers={**rider_auth, "Idempotency-Key": "wheel-trip"},
            )
            assert r.status_code == 201, r.text
            trip = r.json()
            offer = await driver.expect("offer")
            assert offer["trip_id"] == trip["id"]
            await driver.send({"type": "accept", "offer_id": offer["offer_id"]})
            assigned = await driver.expect("trip.assigned")
            assert assigned["trip"]["driver_id"] == driver_id
            for step, status in (
                ("arrived", "arrived"),
                ("start", "in_progress"),
                ("complete", "completed"),
            ):
                r = await http.post(f"/v1/trips/{trip['id']}/{step}", headers=driver_auth)
                assert r.status_code == 200 and r.json()["status"] == status, r.text
        receipt = (await http.get(f"/v1/trips/{trip['id']}/receipt", headers=rider_auth)).json()
        assert receipt["total_cents"] == trip["fare"]["total_cents"]
        assert receipt["platform_commission_cents"] == 0
        assert (
            receipt["driver_earnings_cents"] + receipt["cost_recovery_cents"]
            == (receipt["total_cents"])
        )
