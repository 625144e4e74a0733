"""No secret reaches the logs: a server logging at ``info`` (every request and socket in
uvicorn's access log) is driven through sign-up, admission, sockets opened with
``?token=``, trips, a revocation and refused tokens; then its whole log is searched for
every token and secret it saw."""

from __future__ import annotations

import httpx
import pytest

from core.auth import issue_token
from core.settings import Settings
from server.harness import start_server
from tests.fixtures.phones import CHELSEA, new_driver, new_rider, open_socket

pytestmark = pytest.mark.e2e

FAR_AWAY = {"lat": 40.8500, "lng": -73.9350}  # no driver near: the trip stays requested


async def test_no_token_or_secret_is_logged(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = test_settings.model_copy(
        update={"redis_prefix": f"{test_settings.redis_prefix}logs:"}
    )
    log_path = tmp_path_factory.mktemp("logs") / "server.log"
    server = start_server(settings, log_path, log_level="info")
    seen: list[str] = [settings.operator_token, settings.jwt_secret]
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            rider_id, rider = await new_rider(http)
            driver_id, driver_token = await new_driver(http, server)
            rider_token = rider["Authorization"][7:]
            seen += [rider_token, driver_token]
            async with (
                open_socket(server, "/v1/drivers/ws", driver_token, header=False) as driver_ws,
                open_socket(server, "/v1/riders/ws", rider_token, header=False) as rider_ws,
            ):
                await driver_ws.call({"type": "status", "status": "offline"})
                await rider_ws.call({"type": "ack", "event_id": 0})
                trip = await http.post(
                    "/v1/trips", json={"pickup": FAR_AWAY, "dropoff": CHELSEA}, headers=rider
                )
                assert trip.status_code == 201
                await http.get(f"/v1/trips/{trip.json()['id']}?token={rider_token}", headers=rider)
                await http.post(f"/v1/trips/{trip.json()['id']}/cancel", headers=rider)
            expired = issue_token(
                secret=settings.jwt_secret, role="rider", subject_id=rider_id, ttl_s=-1
            )
            forged = issue_token(
                secret="not-the-secret-" * 3, role="driver", subject_id=driver_id, ttl_s=60
            )
            seen += [expired, forged]
            for bad in (expired, forged):
                r = await http.get("/v1/riders/me", headers={"Authorization": f"Bearer {bad}"})
                assert r.status_code == 401
                async with open_socket(server, "/v1/riders/ws", bad, header=False) as ws:
                    assert (await ws.recv())["type"] == "error"
            assert (await http.post("/v1/tokens/revoke", headers=rider)).status_code == 204
            assert (await http.get("/v1/riders/me", headers=rider)).status_code == 401
    finally:
        server.stop()
    log = log_path.read_text(errors="replace")
    # The log did record the requests, sockets and refusals (so the search means something).
    assert "/v1/drivers/ws?token=[redacted]" in log, log[-2000:]
    assert "/v1/riders/me" in log and "/v1/tokens/revoke" in log
    for secret in seen:
        signature = secret.rsplit(".", 1)[-1]
        assert secret not in log
        assert signature not in log, "a token's signature was logged"
