"""dispatch.views: the wire's fare and receipt. Their ``breakdown`` holds the parts and
nothing else, so a UI that sums every key gets the total (a top-up is said beside it)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.fare_terms import FareRuleTerms
from core.models import Trip
from dispatch.views import fare_view, receipt_view
from fares.pricing import Fare, price

AT = datetime(2026, 11, 22, 1, 24, tzinfo=UTC)
CENTS = st.integers(min_value=0, max_value=50_000)
RATES = st.integers(min_value=0, max_value=5_000)
rules = st.builds(
    FareRuleTerms,
    version=st.just(1),
    base_cents=CENTS,
    per_km_cents=RATES,
    per_minute_cents=RATES,
    minimum_cents=CENTS,
    cancellation_fee_cents=CENTS,
    currency=st.sampled_from(["USD", "EUR"]),
    cost_recovery_mode=st.sampled_from(["per_trip", "dues"]),
)


def _trip(fare: Fare, *, status: str, cancellation_fee_cents: int = 0) -> Trip:
    return Trip(
        id="trp_test",
        rider_id="rdr_test",
        driver_id="drv_test",
        status=status,
        fare_rule_version=1,
        distance_m=1000,
        duration_s=300,
        currency=fare.currency,
        fare_total_cents=fare.total_cents,
        base_cents=fare.base_cents,
        distance_cents=fare.distance_cents,
        time_cents=fare.time_cents,
        minimum_topup_cents=fare.minimum_topup_cents,
        cost_recovery_cents=fare.cost_recovery_cents,
        platform_commission_cents=fare.platform_commission_cents,
        cancellation_fee_cents=cancellation_fee_cents,
        completed_at=AT if status == "completed" else None,
        cancelled_at=AT if status == "cancelled" else None,
    )


@settings(max_examples=150, deadline=None)
@given(
    terms=rules,
    distance_m=st.integers(min_value=0, max_value=500_000),
    duration_s=st.integers(min_value=0, max_value=6 * 3600),
    fee=st.integers(min_value=0, max_value=10_000),
)
def test_every_breakdown_key_sums_to_the_total(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    wire = fare_view(fare)
    assert all(type(v) is int for v in wire["breakdown"].values())
    assert sum(wire["breakdown"].values()) == wire["total_cents"] == fare.total_cents
    assert wire["minimum_topup_cents"] == fare.minimum_topup_cents
    assert "minimum_topup_cents" not in wire["breakdown"]

    receipt = receipt_view(_trip(fare, status="completed"))
    assert sum(receipt["breakdown"].values()) == receipt["total_cents"] == fare.total_cents
    assert receipt["minimum_topup_cents"] == fare.minimum_topup_cents

    late = receipt_view(
        _trip(fare, status="cancelled", cancellation_fee_cents=terms.cancellation_fee_cents)
    )
    assert sum(late["breakdown"].values()) == late["total_cents"]
    assert late["total_cents"] == terms.cancellation_fee_cents
