"""One timestamp format on every transport: RFC 3339 in UTC with ``Z``, the same string
over HTTP and in a socket frame."""

from __future__ import annotations

import re

import httpx
import pytest

from server.harness import Server
from tests.fixtures.phones import CHELSEA, MIDTOWN, new_rider, open_socket

pytestmark = pytest.mark.e2e

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


async def test_socket_and_http_write_the_same_z_timestamps(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, auth = await new_rider(http)
        token = auth["Authorization"][7:]
        async with open_socket(server, "/v1/riders/ws", token) as rider:
            r = await http.post(
                "/v1/trips", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=auth
            )
            assert r.status_code == 201, r.text
            trip = r.json()
            assert RFC3339_Z.match(trip["requested_at"]), trip["requested_at"]

            requested = await rider.expect("trip.updated")
            assert requested["trip"]["id"] == trip["id"]
            assert RFC3339_Z.match(requested["trip"]["requested_at"])
            assert requested["trip"]["requested_at"] == trip["requested_at"]

            cancelled = (await http.post(f"/v1/trips/{trip['id']}/cancel", headers=auth)).json()
            frame = await rider.expect("trip.updated", timeout=10)
            while frame["trip"]["status"] != "cancelled":
                frame = await rider.expect("trip.updated")
            assert RFC3339_Z.match(frame["trip"]["cancelled_at"]), frame
            assert frame["trip"]["cancelled_at"] == cancelled["cancelled_at"]
            fetched = (await http.get(f"/v1/trips/{trip['id']}", headers=auth)).json()
            assert fetched["cancelled_at"] == frame["trip"]["cancelled_at"]
