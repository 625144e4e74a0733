"""fares.pricing.price: integer fare arithmetic, checked by properties and by hand."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.fare_terms import FareRuleTerms
from fares.pricing import (
    PLATFORM_COMMISSION_CENTS,
    Fare,
    cancellation_fee,
    price,
)

CENTS = st.integers(min_value=0, max_value=50_000)
RATES = st.integers(min_value=0, max_value=5_000)
DISTANCES_M = st.integers(min_value=0, max_value=500_000)
DURATIONS_S = st.integers(min_value=0, max_value=6 * 3600)
FEES = st.integers(min_value=0, max_value=10_000)
MODES = st.sampled_from(["per_trip", "dues"])

rules = st.builds(
    FareRuleTerms,
    version=st.integers(min_value=1, max_value=1_000),
    base_cents=CENTS,
    per_km_cents=RATES,
    per_minute_cents=RATES,
    minimum_cents=CENTS,
    cancellation_fee_cents=CENTS,
    currency=st.sampled_from(["USD", "EUR", "CAD"]),
    cost_recovery_mode=MODES,
)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def rule(
    *,
    base: int = 250,
    per_km: int = 120,
    per_minute: int = 35,
    minimum: int = 800,
    mode: str = "per_trip",
) -> FareRuleTerms:
    return FareRuleTerms(
        version=1,
        base_cents=base,
        per_km_cents=per_km,
        per_minute_cents=per_minute,
        minimum_cents=minimum,
        cancellation_fee_cents=500,
        currency="USD",
        cost_recovery_mode=mode,  # type: ignore[arg-type]
    )


def parts(fare: Fare) -> list[int]:
    return [
        fare.base_cents,
        fare.distance_cents,
        fare.time_cents,
        fare.cost_recovery_cents,
        fare.platform_commission_cents,
    ]


# -- properties ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_the_five_contract_parts_add_up_to_the_total(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    assert sum(parts(fare)) == fare.total_cents
    assert fare.currency == terms.currency


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_every_part_is_a_non_negative_int_and_commission_is_zero(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    for value in [*parts(fare), fare.total_cents, fare.minimum_topup_cents]:
        assert type(value) is int
        assert value >= 0
    assert fare.platform_commission_cents == 0
    assert PLATFORM_COMMISSION_CENTS == 0


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_total_is_at_least_the_minimum_plus_the_fee_when_charged(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    charged = fee if terms.cost_recovery_mode == "per_trip" else 0
    assert fare.total_cents >= terms.minimum_cents + charged
    assert fare.cost_recovery_cents == charged


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_receipt_identity_driver_earnings_plus_recovery_plus_commission(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    assert (
        fare.driver_earnings_cents + fare.cost_recovery_cents + fare.platform_commission_cents
        == fare.total_cents
    )
    # The driver keeps the whole ride part: base (with top-up), distance and time.
    assert fare.driver_earnings_cents == fare.base_cents + fare.distance_cents + fare.time_cents


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_dues_mode_ignores_the_fee(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    dues = FareRuleTerms(**{**_fields(terms), "cost_recovery_mode": "dues"})
    with_fee = price(
        dues, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee
    )
    without = price(dues, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=0)
    assert with_fee.cost_recovery_cents == 0
    assert with_fee == without


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_per_trip_mode_adds_exactly_the_fee(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    per_trip = FareRuleTerms(**{**_fields(terms), "cost_recovery_mode": "per_trip"})
    with_fee = price(
        per_trip, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee
    )
    without = price(per_trip, distance_m=distance_m, duration_s=duration_s)
    assert with_fee.total_cents == without.total_cents + fee
    assert with_fee.cost_recovery_cents == fee
    assert with_fee.driver_earnings_cents == without.driver_earnings_cents


@PROPERTY_SETTINGS
@given(terms=rules, distance_m=DISTANCES_M, duration_s=DURATIONS_S, fee=FEES)
def test_minimum_topup_is_part_of_base_and_only_when_the_ride_is_below_minimum(
    terms: FareRuleTerms, distance_m: int, duration_s: int, fee: int
) -> None:
    fare = price(terms, distance_m=distance_m, duration_s=duration_s, cost_recovery_fee_cents=fee)
    ride_cents = terms.base_cents + fare.distance_cents + fare.time_cents
    assert 0 <= fare.minimum_topup_cents <= fare.base_cents
    assert fare.base_cents == terms.base_cents + fare.minimum_topup_cents
    if ride_cents < terms.minimum_cents:
        assert fare.minimum_topup_cents == terms.minimum_cents - ride_cents
        assert fare.minimum_topup_cents > 0
    else:
        assert fare.minimum_topup_cents == 0


@PROPERTY_SETTINGS
@given(
    terms=rules,
    distance_m=DISTANCES_M,
    more_m=st.integers(min_value=0, max_value=100_000),
    duration_s=DURATIONS_S,
    more_s=st.integers(min_value=0, max_value=3600),
    fee=FEES,
)
def test_more_distance_or_time_never_lowers_the_fare(
    terms: FareRuleTerms, distance_m: int, more_m: int, duration_s: int, more_s: int, fee: int
) -> None:
    def total(d: int, t: int) -> int:
        return price(terms, distance_m=d, duration_s=t, cost_recovery_fee_cents=fee).total_cents

    shorter = total(distance_m, duration_s)
    assert total(distance_m + more_m, duration_s) >= shorter
    assert total(distance_m, duration_s + more_s) >= shorter
    a = price(terms, distance_m=distance_m, duration_s=duration_s)
    b = price(terms, distance_m=distance_m + more_m, duration_s=duration_s)
    assert b.distance_cents >= a.distance_cents


@PROPERTY_SETTINGS
@given(distance_m=DISTANCES_M, per_km=RATES, duration_s=DURATIONS_S, per_minute=RATES)
def test_distance_and_time_are_exact_rationals_rounded_half_up(
    distance_m: int, per_km: int, duration_s: int, per_minute: int
) -> None:
    from fractions import Fraction

    def half_up(x: Fraction) -> int:
        floor = x.numerator // x.denominator
        return floor + (1 if x - floor >= Fraction(1, 2) else 0)

    fare = price(
        rule(base=0, per_km=per_km, per_minute=per_minute, minimum=0),
        distance_m=distance_m,
        duration_s=duration_s,
    )
    assert fare.distance_cents == half_up(Fraction(distance_m * per_km, 1000))
    assert fare.time_cents == half_up(Fraction(duration_s * per_minute, 60))


def _fields(terms: FareRuleTerms) -> dict[str, object]:
    return {f.name: getattr(terms, f.name) for f in dataclasses.fields(FareRuleTerms)}


# -- worked examples, by hand ----------------------------------------------------------


def test_worked_example_above_the_minimum() -> None:
    # 2.725 km x 120 = 327.0 ; 455 s = 7.5833 min x 35 = 265.4167 -> 265
    # 250 + 327 + 265 = 842 >= 800, so no top-up.
    fare = price(rule(), distance_m=2_725, duration_s=455)
    assert fare.distance_cents == 327
    assert fare.time_cents == 265
    assert fare.base_cents == 250
    assert fare.minimum_topup_cents == 0
    assert fare.cost_recovery_cents == 0
    assert fare.platform_commission_cents == 0
    assert fare.total_cents == 842
    assert fare.currency == "USD"
    assert fare.driver_earnings_cents == 842


def test_worked_example_with_per_trip_fee() -> None:
    fare = price(rule(), distance_m=2_725, duration_s=455, cost_recovery_fee_cents=37)
    assert fare.total_cents == 879
    assert fare.cost_recovery_cents == 37
    assert fare.driver_earnings_cents == 842


def test_worked_example_with_dues_ignores_fee() -> None:
    fare = price(rule(mode="dues"), distance_m=2_725, duration_s=455, cost_recovery_fee_cents=37)
    assert fare.total_cents == 842
    assert fare.cost_recovery_cents == 0
    assert fare.driver_earnings_cents == 842


def test_worked_example_topped_up_to_the_minimum() -> None:
    # 1 km x 120 = 120 ; 60 s x 35/min = 35 ; 250 + 120 + 35 = 405 -> top-up 395.
    fare = price(rule(), distance_m=1_000, duration_s=60, cost_recovery_fee_cents=50)
    assert fare.distance_cents == 120
    assert fare.time_cents == 35
    assert fare.minimum_topup_cents == 395
    assert fare.base_cents == 645
    assert fare.cost_recovery_cents == 50
    assert fare.total_cents == 850
    assert fare.driver_earnings_cents == 800


def test_zero_trip_costs_the_minimum() -> None:
    fare = price(rule(), distance_m=0, duration_s=0)
    assert (fare.distance_cents, fare.time_cents) == (0, 0)
    assert fare.minimum_topup_cents == 550
    assert fare.total_cents == 800


def test_ride_exactly_at_minimum_needs_no_topup() -> None:
    # 250 + 2.5 km x 120 (=300) + 0 = 550 with minimum 550.
    fare = price(rule(minimum=550, per_minute=0), distance_m=2_500, duration_s=999)
    assert fare.minimum_topup_cents == 0
    assert fare.total_cents == 550


@pytest.mark.parametrize(
    ("distance_m", "expected_cents"),
    [
        (499, 0),  # 0.499 -> 0
        (500, 1),  # 0.5 -> 1 (half up)
        (1_499, 1),  # 1.499 -> 1
        (1_500, 2),  # 1.5 -> 2
        (2_500, 3),  # 2.5 -> 3 (half up, not to even)
        (2_501, 3),
        (3_499, 3),
    ],
)
def test_distance_rounds_half_up(distance_m: int, expected_cents: int) -> None:
    fare = price(
        rule(base=0, per_km=1, per_minute=0, minimum=0), distance_m=distance_m, duration_s=0
    )
    assert fare.distance_cents == expected_cents
    assert fare.total_cents == expected_cents


@pytest.mark.parametrize(
    ("duration_s", "expected_cents"),
    [
        (29, 0),  # 0.483 -> 0
        (30, 1),  # 0.5 -> 1
        (89, 1),
        (90, 2),  # 1.5 -> 2
        (150, 3),  # 2.5 -> 3 (half up, not to even)
        (149, 2),
    ],
)
def test_time_rounds_half_up(duration_s: int, expected_cents: int) -> None:
    fare = price(
        rule(base=0, per_km=0, per_minute=1, minimum=0), distance_m=0, duration_s=duration_s
    )
    assert fare.time_cents == expected_cents
    assert fare.total_cents == expected_cents


def test_rounding_with_real_rates() -> None:
    # 1,250 m x 130/km = 162.5 -> 163 ; 90 s x 45/min = 67.5 -> 68.
    fare = price(
        rule(base=100, per_km=130, per_minute=45, minimum=0), distance_m=1_250, duration_s=90
    )
    assert fare.distance_cents == 163
    assert fare.time_cents == 68
    assert fare.total_cents == 100 + 163 + 68


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distance_m": -1, "duration_s": 0},
        {"distance_m": 0, "duration_s": -1},
        {"distance_m": 0, "duration_s": 0, "cost_recovery_fee_cents": -1},
        {"distance_m": -1_000, "duration_s": -60, "cost_recovery_fee_cents": -5},
    ],
)
def test_negative_inputs_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        price(rule(), **kwargs)


# -- cancellation fees ----------------------------------------------------------------------

ASSIGNED_AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
RULE = rule()


@pytest.mark.parametrize(
    ("status", "by", "seconds_after", "charged"),
    [
        ("requested", "rider", 600, False),  # no driver on the way yet
        ("assigned", "rider", 0, False),  # within the grace
        ("assigned", "rider", 119.9, False),
        ("assigned", "rider", 120, True),  # the grace has run out
        ("arrived", "rider", 5, True),  # the driver is waiting at the pickup
        ("assigned", "driver", 600, False),  # the driver's own cancellation
        ("arrived", "operator", 600, False),
    ],
)
def test_cancellation_fee_after_the_grace_or_the_driver_arriving(
    status: str, by: str, seconds_after: float, charged: bool
) -> None:
    fee = cancellation_fee(
        RULE,
        status=status,
        cancelled_by=by,
        assigned_at=None if status == "requested" else ASSIGNED_AT,
        now=ASSIGNED_AT + timedelta(seconds=seconds_after),
        grace_s=120,
    )
    assert fee == (RULE.cancellation_fee_cents if charged else 0)
