"""The co-op's books through the real server, as the operators' tools and the members'
and riders' phones see them: publish a budget, a trip under ``per_trip`` (the fee is on
the quote and the receipt), a trip under ``dues`` (the driver keeps the whole fare), close
the period (dues, costs, patronage), and read the statements, the period and the audit log.

The server runs on a database of its own: the mode changes with a new rule version, and
closing the running month moves every later trip into the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from core.settings import Settings
from fares.accounts import Period
from fares.ledger import next_period
from server.harness import Server, libpq_url
from tests.fixtures.audit import fetch_audit, verify_chain
from tests.fixtures.isolated import isolated_server
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    new_driver,
    new_rider,
    open_socket,
    problem_of,
)
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
LINES = [{"label": "insurance", "amount_cents": 5000}, {"label": "software", "amount_cents": 1001}]
FEE = 2001  # 6001 over 3 expected trips, rounded up


@pytest.fixture(scope="module")
@starts_server
def books_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with isolated_server(test_settings, tmp_path_factory, "books") as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ride(
    http: httpx.AsyncClient,
    server: Server,
    driver_token: str,
    rider_auth: dict[str, str],
    *,
    steps: tuple[str, ...] = ("arrived", "start", "complete"),
    rider_cancels: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Quote, request, let the driver accept and take ``steps`` (by default: drive the
    trip to completion), then, if asked, the rider cancels; (quote, trip as last seen,
    the receipt answer)."""
    async with open_socket(server, "/v1/drivers/ws", driver_token) as driver:
        assert (await driver.call({"type": "status", "status": "online"}))["type"] == "ok"
        assert (await driver.call({"type": "location", **NEAR_MIDTOWN}))["type"] == "ok"
        quote = (await http.post("/v1/quotes", json=TRIP, headers=rider_auth)).json()
        r = await http.post("/v1/trips", json=TRIP, headers=rider_auth)
        assert r.status_code == 201, r.text
        trip = r.json()
        assert trip["fare"] == quote["fare"]
        offer = await driver.expect("offer")
        await driver.send({"type": "accept", "offer_id": offer["offer_id"]})
        await driver.expect("trip.assigned")
        for path in steps:
            r = await http.post(f"/v1/trips/{trip['id']}/{path}", headers=bearer(driver_token))
            assert r.status_code == 200, r.text
        if rider_cancels:
            r = await http.post(f"/v1/trips/{trip['id']}/cancel", headers=rider_auth)
            assert r.status_code == 200, r.text
            told = await driver.expect("trip.cancelled")
            assert told["trip"]["cancellation_fee_cents"] == r.json()["cancellation_fee_cents"]
        assert (await driver.call({"type": "status", "status": "offline"}))["type"] == "ok"
    receipt = (await http.get(f"/v1/trips/{trip['id']}/receipt", headers=rider_auth)).json()
    return quote, r.json(), receipt


async def switch_to_dues(database_url: str) -> None:
    """A new rule version recovering costs by dues (as an adopted proposal would add)."""
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        await conn.execute(
            "INSERT INTO fare_rules (version, base_cents, per_km_cents, per_minute_cents, "
            "minimum_cents, cancellation_fee_cents, currency, cost_recovery_mode, "
            "fairness_weight_permille) SELECT version + 1, base_cents, per_km_cents, "
            "per_minute_cents, minimum_cents, cancellation_fee_cents, currency, 'dues', "
            "fairness_weight_permille FROM fare_rules ORDER BY version DESC LIMIT 1"
        )
    finally:
        await conn.close()


async def test_budget_trips_in_both_modes_close_and_statements(books_server: Server) -> None:
    server = books_server
    op = bearer(server.settings.operator_token)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        a_id, a_token = await new_driver(http, server)
        b_id, b_token = await new_driver(http, server)
        _, rider_auth = await new_rider(http)

        # Publish this month's budget (operators only); anyone signed in can read it.
        first = await ride(http, server, a_token, rider_auth)  # learn the month, fee-free
        assert first[2]["cost_recovery_cents"] == 0
        period = first[1]["completed_at"][:7]
        body = {"lines": LINES, "expected_trips": 3}
        denied = await http.put(f"/v1/coop/budgets/{period}", json=body, headers=rider_auth)
        assert denied.status_code == 403, denied.text
        r = await http.put(f"/v1/coop/budgets/{period}", json=body, headers=op)
        assert r.status_code == 200, r.text
        budget = r.json()
        assert budget["total_cents"] == 6001 and budget["per_trip_fee_cents"] == FEE
        assert budget["cost_recovery_mode"] == "per_trip" and budget["dues"] is None
        read = (await http.get(f"/v1/coop/budgets/{period}", headers=rider_auth)).json()
        assert read == budget
        bad = await http.put("/v1/coop/budgets/2026-13", json=body, headers=op)
        assert problem_of(bad)["type"] == "invalid-period"

        # per_trip: the fee is on the quote, the trip and the receipt.
        quote, trip, receipt = await ride(http, server, a_token, rider_auth)
        assert quote["fare"]["breakdown"]["cost_recovery_cents"] == FEE
        assert trip["fare"]["breakdown"]["cost_recovery_cents"] == FEE
        assert receipt["cost_recovery_cents"] == FEE
        assert receipt["platform_commission_cents"] == 0
        assert receipt["driver_earnings_cents"] == receipt["total_cents"] - FEE

        # dues: no fee on trips; the member keeps the whole fare.
        await switch_to_dues(server.settings.database_url)
        budget = (await http.get(f"/v1/coop/budgets/{period}", headers=rider_auth)).json()
        assert budget["cost_recovery_mode"] == "dues" and budget["per_trip_fee_cents"] is None
        assert sum(d["amount_cents"] for d in budget["dues"]) == 6001
        assert {d["driver_id"] for d in budget["dues"]} == {a_id, b_id}
        quote, _, dues_receipt = await ride(http, server, b_token, rider_auth)
        assert quote["fare"]["breakdown"]["cost_recovery_cents"] == 0
        assert dues_receipt["cost_recovery_cents"] == 0
        assert dues_receipt["driver_earnings_cents"] == dues_receipt["total_cents"]

        # Cancellations: free within the grace after the driver accepted; once the driver
        # has arrived, the rule's fee, all of it to the driver, with a receipt of its own.
        cancel_fee = (await http.get("/v1/fares/rules/current")).json()["cancellation_fee_cents"]
        assert cancel_fee > 0
        _, free, no_receipt = await ride(
            http, server, b_token, rider_auth, steps=(), rider_cancels=True
        )
        assert free["status"] == "cancelled" and free["cancellation_fee_cents"] == 0
        assert no_receipt["type"].endswith("receipt-not-ready")
        _, late, late_receipt = await ride(
            http, server, b_token, rider_auth, steps=("arrived",), rider_cancels=True
        )
        assert late["status"] == "cancelled" and late["cancellation_fee_cents"] == cancel_fee
        assert late_receipt["kind"] == "cancellation"
        assert late_receipt["total_cents"] == late_receipt["driver_earnings_cents"] == cancel_fee
        assert late_receipt["cost_recovery_cents"] == late_receipt["platform_commission_cents"] == 0
        assert sum(late_receipt["breakdown"].values()) == cancel_fee

        # Close: costs paid, dues charged, the surplus (the per-trip fee collected) goes
        # back to the members by trips; a second close answers the same and posts nothing.
        open_period = (await http.get(f"/v1/coop/periods/{period}", headers=rider_auth)).json()
        assert open_period["status"] == "open" and open_period["patronage"] == []
        r = await http.post(f"/v1/coop/periods/{period}/close", headers=rider_auth)
        assert r.status_code == 403
        r = await http.post(f"/v1/coop/periods/{period}/close", headers=op)
        assert r.status_code == 200, r.text
        closed = r.json()
        fares = first[2]["total_cents"] + receipt["total_cents"] + dues_receipt["total_cents"]
        assert closed["status"] == "closed" and closed["cost_recovery_mode"] == "dues"
        assert closed["fares_cents"] == fares
        assert closed["cost_recovery_cents"] == FEE
        assert closed["driver_earnings_cents"] == fares - FEE
        assert closed["dues_cents"] == 6001 and closed["costs_cents"] == 6001
        assert closed["surplus_cents"] == FEE
        assert closed["cancellations"] == 1 and closed["cancellation_fees_cents"] == cancel_fee
        patronage = {p["driver_id"]: (p["trips"], p["amount_cents"]) for p in closed["patronage"]}
        assert sum(c for _, c in patronage.values()) == FEE
        assert patronage == {a_id: (2, 1334), b_id: (1, 667)}
        again = await http.post(f"/v1/coop/periods/{period}/close", headers=op)
        assert again.json() == closed
        assert (await http.get(f"/v1/coop/periods/{period}", headers=op)).json() == closed
        early = await http.post("/v1/coop/periods/2999-01/close", headers=op)
        assert early.status_code == 409 and problem_of(early)["type"] == "period-not-started"
        late = await http.put(f"/v1/coop/budgets/{period}", json=body, headers=op)
        assert late.status_code == 409 and problem_of(late)["type"] == "period-closed"

        # Statements: trips, fees, dues and patronage, reconciling with the earnings.
        dues = {d["driver_id"]: d["amount_cents"] for d in budget["dues"]}
        for member, token, receipts, cancelled in (
            (a_id, a_token, [first[2], receipt], []),
            (b_id, b_token, [dues_receipt], [late_receipt]),
        ):
            auth = bearer(token)
            st = (await http.get(f"/v1/drivers/me/statement?period={period}", headers=auth)).json()
            earned = sum(x["driver_earnings_cents"] for x in receipts)
            fees = sum(x["total_cents"] for x in cancelled)
            assert st["status"] == "closed" and st["trips"] == len(receipts)
            kinds = ["trip"] * len(receipts) + ["cancellation"] * len(cancelled)
            assert [line["kind"] for line in st["lines"]] == [*kinds, "dues", "patronage"]
            assert st["driver_earnings_cents"] == earned
            assert st["cancellations"] == len(cancelled) and st["cancellation_fees_cents"] == fees
            assert st["dues_cents"] == dues[member]
            assert st["patronage_cents"] == patronage[member][1]
            assert st["net_cents"] == earned + fees - dues[member] + patronage[member][1]
            e = (await http.get(f"/v1/drivers/me/earnings?period={period}", headers=auth)).json()
            assert e["trips"] == len(receipts) and e["driver_earnings_cents"] == earned
            assert e["cancellation_fees_cents"] == fees
            assert e["fares_cents"] == sum(x["total_cents"] for x in receipts)

        # A trip completing after the close lands in the next open period.
        *_, after_receipt = await ride(http, server, b_token, rider_auth)
        assert after_receipt["cost_recovery_cents"] == 0  # dues
        nxt = str(next_period(Period.parse(period)))
        for p, trips in ((period, 1), (nxt, 1)):
            st = (
                await http.get(f"/v1/drivers/me/statement?period={p}", headers=bearer(b_token))
            ).json()
            assert st["trips"] == trips, p
        assert (await http.get(f"/v1/coop/periods/{period}", headers=op)).json() == closed
        moved = (await http.get(f"/v1/coop/periods/{nxt}", headers=op)).json()
        assert moved["status"] == "open" and moved["trips"] == 1

        # Everything is in the audit log, which anyone can recompute.
        items = await fetch_audit(http, op)
        verify_chain(items)
        kinds = [i["kind"] for i in items]
        assert kinds.count("budget.published") == 1
        for kind in ("costs.paid", "dues.charged", "period.closed"):
            assert kinds.count(kind) == 1, kind
        assert kinds.count("patronage.paid") == 2
        closing = next(i["payload"] for i in items if i["kind"] == "period.closed")
        assert closing["surplus_cents"] == FEE and closing["patronage_cents"] == FEE
        assert closing["trips"] == 3 and closing["fares_cents"] == fares
        assert closing["driver_earnings_cents"] == fares - FEE
        assert closing["dues_cents"] == 6001 and closing["carried_cents"] == 0
        assert closing["cancellations"] == 1
        assert closing["cancellation_fees_cents"] == cancel_fee
        paid = {
            i["payload"]["driver_id"]: i["payload"]["amount_cents"]
            for i in items
            if i["kind"] == "patronage.paid"
        }
        assert paid == {a_id: 1334, b_id: 667}
