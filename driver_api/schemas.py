from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from web.schemas import RequestIn, TripOut


class VehicleIn(RequestIn):
    plate: str = Field(min_length=1, max_length=20)
    seats: int = Field(ge=1, le=16)


class MemberAdmission(RequestIn):
    name: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=3, max_length=32, pattern=r"^\+?[0-9 ()\-]{3,32}$")
    vehicle: VehicleIn


class Credentials(BaseModel):
    id: str
    token: str


class VehicleOut(BaseModel):
    id: str
    plate: str
    seats: int


class DriverOut(BaseModel):
    id: str
    name: str
    phone: str
    status: str
    vehicles: list[VehicleOut]
    live_status: str = Field(description="offline | available | on_trip, from the live index")
    holds_offer: bool
    active_trip: TripOut | None = Field(
        None, description="The trip the member is on (assigned, arrived or in progress)"
    )


class EarningsOut(BaseModel):
    period: str
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int
    platform_commission_cents: int
    currency: str
    cancellations: int = Field(0, description="Riders' late cancellations paid to the member")
    cancellation_fees_cents: int = Field(
        0, description="Paid in full to the member; not part of fares_cents"
    )


class StatementLineOut(BaseModel):
    kind: str = Field(description="trip | cancellation | dues | patronage")
    journal_id: int
    trip_id: str | None
    fare_cents: int
    cost_recovery_cents: int
    amount_cents: int = Field(description="The member's account: + earned/paid back, - owed")
    posted_at: datetime


class StatementOut(BaseModel):
    period: str
    status: str = Field(description="open | closed")
    currency: str
    lines: list[StatementLineOut]
    trips: int
    fares_cents: int
    driver_earnings_cents: int
    cost_recovery_cents: int
    dues_cents: int
    patronage_cents: int
    net_cents: int = Field(description="earnings + cancellation fees - dues + patronage")
    cancellations: int = Field(0, description="Riders' late cancellations paid to the member")
    cancellation_fees_cents: int = 0


class DispatchDecision(BaseModel):
    at: str
    batch: str
    trip_id: str
    pickup_eta_s: int
    fairness_bonus_s: int
    outcome: str = Field(
        description="offered | offer-not-made | matched-to-another-trip | "
        "went-to-another-driver | left-unmatched"
    )
    winner_pickup_eta_s: int | None
    winner_fairness_bonus_s: int | None
    candidates: int
    policy: str
    fairness_weight: float
    fare_rule_version: int


class DispatchLog(BaseModel):
    items: list[DispatchDecision]


class DemandOrigin(BaseModel):
    cell: str = Field(description="H3 cell (the live index's resolution) of the position")
    lat: float
    lng: float


class DemandCell(BaseModel):
    cell: str = Field(description="H3 cell id")
    lat: float = Field(description="the cell's centre")
    lng: float
    drive_s: int = Field(description="estimated drive from your position (0 for your cell)")
    expected_wait_s: int = Field(
        description="expected wait for a rider on arrival: (idle drivers in reach + 1) / "
        "forecast requests per second in reach"
    )
    score_s: int = Field(description="drive_s + expected_wait_s; cells are ranked by it")
    requests_per_hour: float = Field(
        description="forecast requests per hour in the cell and its six neighbours"
    )
    idle_drivers: int = Field(description="idle drivers in the cell and its neighbours now")


class DemandMapOut(BaseModel):
    """Where to wait: advice only, nothing in dispatch depends on following it."""

    at: str = Field(description="when the advice was computed (ISO 8601)")
    hour_of_week: int = Field(description="0 = Monday 00:00 … 167 = Sunday 23:00, NY time")
    origin: DemandOrigin
    forecast_built_at: str | None = Field(
        description="when the dispatcher last rebuilt the forecast; null: never (no advice)"
    )
    cells: list[DemandCell] = Field(description="best first; empty when no demand is forecast")
