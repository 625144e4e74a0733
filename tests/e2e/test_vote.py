"""One fare vote through the real server, as the members' and riders' phones see it:
propose, hear of it on the socket, vote (and change one's mind), the dispatcher closes it
at the deadline, the next quote uses the new rule, trips quoted or started under the old
rule are charged the old rule, and the audit log recomputes from the API alone.

The server runs on a database of its own: adopting a rule changes the current rule for
every trip priced after it, which the other end-to-end tests do not expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from core.fare_terms import FareRuleTerms, from_wire_view
from core.settings import Settings
from fares.pricing import price
from server.harness import Server
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

# Long enough for three members to vote over HTTP, short enough to wait for.
VOTE_WINDOW_S = 4
# The dispatcher closes a due proposal within one batch (0.1 s in tests); generous.
CLOSE_TIMEOUT_S = VOTE_WINDOW_S + 20
TRIP = {"pickup": MIDTOWN, "dropoff": CHELSEA}
NEW_RULE = {
    "base_cents": 300,
    "per_km_cents": 150,
    "per_minute_cents": 45,
    "minimum_cents": 900,
    "cancellation_fee_cents": 500,
    "currency": "USD",
    "cost_recovery_mode": "per_trip",
    "fairness_weight": 0.25,
}


@pytest.fixture(scope="module")
@starts_server
def vote_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with isolated_server(
        test_settings, tmp_path_factory, "vote", vote_min_window_s=1, vote_quorum=0.5
    ) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def terms(rule: dict[str, Any]) -> FareRuleTerms:
    """A ``FareRule`` answer as the terms pricing takes."""
    return FareRuleTerms(**from_wire_view(rule), version=rule["version"])


async def test_a_fare_vote_through_the_real_server(vote_server: Server) -> None:
    server = vote_server
    operator = bearer(server.settings.operator_token)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        drivers = [await new_driver(http, server) for _ in range(3)]
        (d0, t0), (d1, t1), (d2, t2) = drivers
        _, rider_a = await new_rider(http)
        _, rider_b = await new_rider(http)
        _, rider_c = await new_rider(http)
        v1 = (await http.get("/v1/fares/rules/current")).json()
        assert v1["version"] == 1 and v1["fairness_weight"] == 0

        async with (
            open_socket(server, "/v1/drivers/ws", t0) as s0,
            open_socket(server, "/v1/drivers/ws", t1) as s1,
            open_socket(server, "/v1/drivers/ws", t2) as s2,
        ):
            # Rider A's trip starts under version 1 (the vote will land mid-trip).
            await s0.call({"type": "status", "status": "online"})
            await s0.call({"type": "location", **NEAR_MIDTOWN})
            r = await http.post("/v1/trips", json=TRIP, headers=rider_a)
            assert r.status_code == 201, r.text
            trip_a = r.json()
            assert trip_a["fare_rule_version"] == 1
            offer = await s0.expect("offer", trip_id=trip_a["id"])
            await s0.call({"type": "accept", "offer_id": offer["offer_id"]})
            await s0.expect("trip.assigned")
            for step in ("arrived", "start"):
                r = await http.post(f"/v1/trips/{trip_a['id']}/{step}", headers=bearer(t0))
                assert r.status_code == 200, r.text

            # Rider B is quoted under version 1, and will book later.
            r = await http.post("/v1/quotes", json=TRIP, headers=rider_b)
            assert r.status_code == 200, r.text
            quote_b = r.json()
            assert quote_b["fare_rule_version"] == 1 and quote_b["quote_id"]

            # A member proposes; every member hears of it.
            closes_at = datetime.now(UTC) + timedelta(seconds=VOTE_WINDOW_S)
            r = await http.post(
                "/v1/fares/proposals",
                json={
                    "rule": NEW_RULE,
                    "rationale": "Insurance went up 20 % this year.",
                    "closes_at": closes_at.isoformat(),
                },
                headers=bearer(t0),
            )
            assert r.status_code == 201, r.text
            proposal = r.json()
            pid = proposal["id"]
            assert proposal["status"] == "open" and proposal["proposer_id"] == d0
            assert proposal["eligible_voters"] == 3 and proposal["quorum"] == 0.5
            assert proposal["quorum_ballots"] == 2 and proposal["result_reason"] is None
            assert proposal["rule"] == NEW_RULE
            for s in (s0, s1, s2):
                opened = await s.expect("proposal.opened")
                assert opened["proposal"]["id"] == pid and opened["event_id"] > 0

            # Only members vote, and only those in good standing when it opened; the
            # operator cannot touch the tally.
            _, late = await new_driver(http, server)
            r = await http.post(
                f"/v1/fares/proposals/{pid}/ballots", json={"choice": "no"}, headers=bearer(late)
            )
            assert r.status_code == 403 and problem_of(r)["type"] == "not-eligible"
            for who in (operator, rider_c):
                r = await http.post(
                    f"/v1/fares/proposals/{pid}/ballots", json={"choice": "no"}, headers=who
                )
                assert r.status_code == 403 and problem_of(r)["type"] == "wrong-role"
            for token, choice in ((t0, "yes"), (t1, "no"), (t2, "abstain"), (t1, "yes")):
                r = await http.post(
                    f"/v1/fares/proposals/{pid}/ballots",
                    json={"choice": choice},
                    headers=bearer(token),
                )
                assert r.status_code == 201, r.text
            assert r.json()["replaced"] == "no"
            live = (await http.get(f"/v1/fares/proposals/{pid}", headers=rider_c)).json()
            assert live["status"] == "open"
            assert live["tally"] == {"yes": 2, "no": 0, "abstain": 1}
            listed = (
                await http.get("/v1/fares/proposals", params={"status": "open"}, headers=operator)
            ).json()
            assert pid in [p["id"] for p in listed["items"]]
            assert (await http.get(f"/v1/fares/proposals/{pid}")).status_code == 401

            # At closes_at the dispatcher closes it, and every member hears the result.
            closed = await s1.expect("proposal.closed", timeout=CLOSE_TIMEOUT_S)
            assert closed["proposal"]["id"] == pid
            assert closed["proposal"]["status"] == "adopted"
            assert closed["proposal"]["fare_rule_version"] == 2
            for s in (s0, s2):
                assert (await s.expect("proposal.closed"))["proposal"]["id"] == pid
            r = await http.post(
                f"/v1/fares/proposals/{pid}/ballots", json={"choice": "no"}, headers=bearer(t2)
            )
            assert r.status_code == 409 and problem_of(r)["type"] == "voting-closed"
            final = (await http.get(f"/v1/fares/proposals/{pid}", headers=bearer(t2))).json()
            assert final["status"] == "adopted" and final["tally"] == live["tally"]
            assert final["result_reason"].startswith("adopted")

            # Version 2 is current, with the numbers voted, and prices the next quote.
            v2 = (await http.get("/v1/fares/rules/current")).json()
            assert v2["version"] == 2 and v2["proposal_id"] == pid
            assert {k: v2[k] for k in NEW_RULE} == NEW_RULE
            r = await http.post("/v1/quotes", json=TRIP, headers=rider_c)
            quote_c = r.json()
            assert quote_c["fare_rule_version"] == 2
            expected = price(
                terms(v2),
                distance_m=quote_c["distance_m"],
                duration_s=quote_c["duration_s"],
                cost_recovery_fee_cents=quote_c["fare"]["breakdown"]["cost_recovery_cents"],
            )
            assert quote_c["fare"]["total_cents"] == expected.total_cents
            assert quote_c["fare"]["total_cents"] != quote_b["fare"]["total_cents"]

            # The trip under way when the rule changed is charged version 1.
            r = await http.post(f"/v1/trips/{trip_a['id']}/complete", headers=bearer(t0))
            assert r.status_code == 200, r.text
            receipt = (await http.get(f"/v1/trips/{trip_a['id']}/receipt", headers=rider_a)).json()
            assert receipt["fare_rule_version"] == 1
            assert receipt["total_cents"] == trip_a["fare"]["total_cents"]

            # Rider B books on the version-1 quote and is charged version 1; nobody else
            # can use that quote.
            r = await http.post(
                "/v1/trips", json={**TRIP, "quote_id": quote_b["quote_id"]}, headers=rider_c
            )
            assert r.status_code == 422 and problem_of(r)["type"] == "quote-invalid"
            r = await http.post(
                "/v1/trips", json={**TRIP, "quote_id": quote_b["quote_id"]}, headers=rider_b
            )
            assert r.status_code == 201, r.text
            trip_b = r.json()
            assert trip_b["fare_rule_version"] == 1 and trip_b["fare"] == quote_b["fare"]
            await http.post(f"/v1/trips/{trip_b['id']}/cancel", headers=rider_b)

        # The audit log, from the API alone: the chain recomputes, and it tells the story.
        items = await fetch_audit(http, rider_c)
        verify_chain(items)
        story = [(e["kind"], e["payload"].get("member_id")) for e in items]
        assert story == [
            ("rule.adopted", None),
            ("proposal.opened", None),
            ("ballot.cast", d0),
            ("ballot.cast", d1),
            ("ballot.cast", d2),
            ("ballot.cast", d1),
            ("proposal.closed", None),
            ("rule.adopted", None),
        ]
        assert items[1]["payload"]["eligible_member_ids"] == sorted([d0, d1, d2])
        assert items[-1]["payload"]["version"] == 2
        assert items[-1]["payload"]["fairness_weight_permille"] == 250


async def test_proposals_and_ballots_that_are_refused(vote_server: Server) -> None:
    """Runs after the vote above (file order): the member it admits would otherwise be
    one more eligible voter there."""
    server = vote_server
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        _, token = await new_driver(http, server)
        member = bearer(token)
        _, rider = await new_rider(http)
        soon = datetime.now(UTC) + timedelta(minutes=5)

        def body(**changes: Any) -> dict[str, Any]:
            rule = {**NEW_RULE, **changes.pop("rule", {})}
            return {"rule": rule, "rationale": "why", "closes_at": soon.isoformat(), **changes}

        refused = [
            (member, body(closes_at=datetime.now(UTC).isoformat()), 422, "closes-too-soon"),
            (member, body(closes_at="2026-11-22T12:00:00"), 422, "invalid-input"),
            (member, body(rule={"currency": "EUR"}), 422, "invalid-input"),
            (member, body(rule={"fairness_weight": 0.1234}), 422, "invalid-input"),
            (member, body(rule={"fairness_weight": 1.5}), 422, "invalid-input"),
            (member, body(rule={"base_cents": -1}), 422, "invalid-input"),
            (member, body(rule={"base_cents": 2.5}), 422, "invalid-input"),
            # Members vote on the rule as written: a term the server cannot keep is
            # refused, not dropped (the one exception to "unknown fields are ignored").
            (member, body(rule={"per_mile_cents": 190}), 422, "invalid-input"),
            (member, body(rationale="nul \u0000 byte"), 422, "invalid-input"),
            (member, body(rationale=""), 422, "invalid-input"),
            (rider, body(), 403, "wrong-role"),
            (bearer(server.settings.operator_token), body(), 403, "wrong-role"),
        ]
        for who, payload, status, slug in refused:
            r = await http.post("/v1/fares/proposals", json=payload, headers=who)
            assert r.status_code == status, (payload, r.text)
            assert problem_of(r)["type"] == slug, payload

        r = await http.get("/v1/fares/proposals/prp_nope", headers=rider)
        assert r.status_code == 404 and problem_of(r)["type"] == "proposal-not-found"
        r = await http.post(
            "/v1/fares/proposals/prp_nope/ballots", json={"choice": "yes"}, headers=member
        )
        assert r.status_code == 404 and problem_of(r)["type"] == "proposal-not-found"
        # Outside the rule, a field from a newer app is ignored.
        r = await http.post("/v1/fares/proposals", json=body(draft_id="d-7"), headers=member)
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        r = await http.post(
            f"/v1/fares/proposals/{pid}/ballots", json={"choice": "maybe"}, headers=member
        )
        assert r.status_code == 422 and problem_of(r)["type"] == "invalid-input"
        assert (await http.get("/v1/coop/audit")).status_code == 401
        r = await http.post("/v1/trips", json={**TRIP, "quote_id": "forged"}, headers=rider)
        assert r.status_code == 422 and problem_of(r)["type"] == "quote-invalid"
