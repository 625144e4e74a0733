"""One member, many ballots at once, over HTTP: one ballot counts.

(100 racing accepts of one offer and 100 concurrent trip requests with one
Idempotency-Key are in tests/e2e/test_dispatch_flow.py.)
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from server.harness import Server
from tests.fixtures.phones import new_driver

pytestmark = pytest.mark.e2e

BALLOTS = 100
RULE = {
    "base_cents": 300,
    "per_km_cents": 150,
    "per_minute_cents": 45,
    "minimum_cents": 900,
    "cancellation_fee_cents": 500,
    "currency": "USD",
    "cost_recovery_mode": "per_trip",
}


async def test_concurrent_ballots_by_one_member_count_once(own_server: Server) -> None:
    server = own_server
    limits = httpx.Limits(max_connections=BALLOTS)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
        _, proposer = await new_driver(http, server)
        voter_id, voter = await new_driver(http, server)
        r = await http.post(
            "/v1/fares/proposals",
            json={
                "rule": RULE,
                "rationale": "Concurrency",
                "closes_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            },
            headers={"Authorization": f"Bearer {proposer}"},
        )
        assert r.status_code == 201, r.text
        proposal = r.json()["id"]
        choices = ["yes", "no", "abstain"] * (BALLOTS // 3) + ["yes"] * (BALLOTS % 3)
        auth = {"Authorization": f"Bearer {voter}"}
        responses = await asyncio.gather(
            *(
                http.post(
                    f"/v1/fares/proposals/{proposal}/ballots", json={"choice": c}, headers=auth
                )
                for c in choices
            )
        )
        assert [r.status_code for r in responses] == [201] * BALLOTS, [
            r.text for r in responses if r.status_code != 201
        ]
        # They went one at a time: exactly one found no earlier ballot to replace.
        assert [r.json()["replaced"] for r in responses].count(None) == 1
        tally = (await http.get(f"/v1/fares/proposals/{proposal}", headers=auth)).json()["tally"]
        assert sum(tally.values()) == 1
        ballots = (await http.get(f"/v1/fares/proposals/{proposal}/ballots", headers=auth)).json()
        assert [b["member_id"] for b in ballots["items"]] == [voter_id]
        assert tally[ballots["items"][0]["choice"]] == 1
