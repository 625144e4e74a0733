"""Fare arithmetic: pure functions over integer cents.

A fare is base + distance + time, topped up to the rule's minimum, plus the co-op's
cost-recovery fee when the rule recovers costs per trip. The platform commission is
always zero. Every part is an integer and the parts add up to the total exactly; no
float ever touches money (distance and time are rounded half-up in integer arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.fare_terms import FareTerms

PLATFORM_COMMISSION_CENTS = 0


@dataclass(frozen=True, slots=True)
class Fare:
    total_cents: int
    currency: str
    base_cents: int
    distance_cents: int
    time_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int
    minimum_topup_cents: int

    @property
    def driver_earnings_cents(self) -> int:
        """What the member keeps: everything but cost recovery (commission is zero)."""
        return self.total_cents - self.cost_recovery_cents - self.platform_commission_cents


def _div_round_half_up(numerator: int, denominator: int) -> int:
    return (numerator * 2 + denominator) // (denominator * 2)


def price(
    rule: FareTerms,
    *,
    distance_m: int,
    duration_s: int,
    cost_recovery_fee_cents: int = 0,
) -> Fare:
    """Price a trip of ``distance_m`` and ``duration_s`` under ``rule``.

    ``cost_recovery_fee_cents`` is the per-trip fee from the period's budget; it is
    charged only when the rule recovers costs ``per_trip`` (under ``dues`` the members
    pay the budget and the driver keeps the whole fare).
    """
    if distance_m < 0 or duration_s < 0 or cost_recovery_fee_cents < 0:
        raise ValueError("distance, duration and fee must not be negative")
    distance_cents = _div_round_half_up(distance_m * rule.per_km_cents, 1000)
    time_cents = _div_round_half_up(duration_s * rule.per_minute_cents, 60)
    ride_cents = rule.base_cents + distance_cents + time_cents
    topup_cents = max(0, rule.minimum_cents - ride_cents)
    fee_cents = cost_recovery_fee_cents if rule.cost_recovery_mode == "per_trip" else 0
    base_cents = rule.base_cents + topup_cents
    total = base_cents + distance_cents + time_cents + fee_cents + PLATFORM_COMMISSION_CENTS
    return Fare(
        total_cents=total,
        currency=rule.currency,
        base_cents=base_cents,
        distance_cents=distance_cents,
        time_cents=time_cents,
        cost_recovery_cents=fee_cents,
        platform_commission_cents=PLATFORM_COMMISSION_CENTS,
        minimum_topup_cents=topup_cents,
    )


def cancellation_fee(
    rule: FareTerms,
    *,
    status: str,
    cancelled_by: str,
    assigned_at: datetime | None,
    now: datetime,
    grace_s: float,
) -> int:
    """What a cancellation costs the rider, all of it paid to the driver who was on the
    way (no cost-recovery share, no commission). Free when the rider cancels before a
    driver accepted, or within ``grace_s`` of the acceptance while the driver is still
    driving to the pickup; the rule's whole ``cancellation_fee_cents`` once the grace has
    run out or the driver has arrived. A driver who cancels charges the rider nothing."""
    if cancelled_by != "rider" or status not in ("assigned", "arrived"):
        return 0
    if status == "assigned" and (
        assigned_at is None or (now - assigned_at).total_seconds() < grace_s
    ):
        return 0
    return rule.cancellation_fee_cents
