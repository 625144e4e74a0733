"""The replay's defaults, named once and cheap to import: ``coopride --help`` shows them
without loading the simulator (numpy, H3, the planner).

The dispatcher's come from ``core.settings`` (the live service's), so a replay is the
service as deployed; the fare is the rule migration 0001 seeds.
"""

from __future__ import annotations

from typing import Any

from core.fare_terms import OPENING_TERMS, FareRuleTerms
from core.settings import Settings

# One seed for everything random in a replay (docs/simulation.md).
DEFAULT_SEED = 20140430


def _setting_default(name: str) -> Any:
    return Settings.model_fields[name].default


DEFAULT_BATCH_S: float = _setting_default("dispatch_batch_s")
DEFAULT_MAX_PICKUP_ETA_S: int = _setting_default("max_pickup_eta_s")
DEFAULT_REQUEST_TIMEOUT_S: float = _setting_default("trip_request_timeout_s")
DEFAULT_RESOLUTION: int = _setting_default("h3_resolution")
# A driver reads the offer card and taps accept: a few seconds (the live offer lives
# 15 s, ``COOP_OFFER_TIMEOUT_S``; the simulated driver always answers in time).
DEFAULT_OFFER_ACCEPT_S = 4.0

# The fare rule migration 0001 seeds (version 1). The simulator pays no per-trip
# cost-recovery fee (the period's budget is not simulated), so the driver keeps the
# whole fare.
SEEDED_FARE_RULE = FareRuleTerms(version=1, **OPENING_TERMS.payload())
# As ``--fare`` takes it: BASE,PER_KM,PER_MINUTE,MINIMUM in cents.
SEEDED_FARE = ",".join(
    str(c)
    for c in (
        SEEDED_FARE_RULE.base_cents,
        SEEDED_FARE_RULE.per_km_cents,
        SEEDED_FARE_RULE.per_minute_cents,
        SEEDED_FARE_RULE.minimum_cents,
    )
)
