"""Quote tokens: a quote's promise that the trip requested on it is priced as quoted.

``POST /v1/quotes`` answers with a ``quote_id``: a token signed with the co-op's JWT
secret that names the rider, the exact pickup and drop-off, the fare rule version and
the cost-recovery fee that priced the quote, and an expiry. ``POST /v1/trips`` with
that ``quote_id`` prices the trip with the same version and fee, even when members
adopted a new rule in between; an expired, altered or someone else's token, or one for
other points, is refused (``quote-invalid``). Nothing is stored: the signature is the
record, so any api process can check a token another one issued.

A quote token can never pass for a bearer token: it carries an audience that
``core.auth.authenticate`` does not accept, and no role.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt

from core.auth import ALGORITHM, ISSUER
from core.errors import QuoteInvalid
from geo.point import LatLng

# Ten minutes: long enough to compare and decide, short enough that a rule the members
# adopt reaches every rider within minutes.
QUOTE_TTL_S = 600
AUDIENCE = "coopride:quote"


@dataclass(frozen=True, slots=True)
class PinnedQuote:
    fare_rule_version: int
    cost_recovery_fee_cents: int


def points_fingerprint(pickup: LatLng, dropoff: LatLng) -> str:
    """The exact points, as ``repr`` writes the floats: a quote holds for these only."""
    canonical = f"{pickup.lat!r},{pickup.lng!r};{dropoff.lat!r},{dropoff.lng!r}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def sign_quote(
    *,
    secret: str,
    rider_id: str,
    pickup: LatLng,
    dropoff: LatLng,
    pinned: PinnedQuote,
    now_s: int | None = None,
    ttl_s: int = QUOTE_TTL_S,
) -> tuple[str, datetime]:
    """The ``quote_id`` for a quote, and when it expires."""
    now = int(time.time()) if now_s is None else now_s
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": rider_id,
        "iat": now,
        "exp": now + ttl_s,
        "pts": points_fingerprint(pickup, dropoff),
        "ver": pinned.fare_rule_version,
        "fee": pinned.cost_recovery_fee_cents,
    }
    token = jwt.encode(claims, secret, algorithm=ALGORITHM)
    return token, datetime.fromtimestamp(now + ttl_s, UTC)


def read_quote(
    token: str, *, secret: str, rider_id: str, pickup: LatLng, dropoff: LatLng
) -> PinnedQuote:
    """What a ``quote_id`` pins, if it is this rider's, for these points, and current."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "aud", "iss", "pts", "ver", "fee"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise QuoteInvalid("the quote has expired; ask for a new one") from exc
    except jwt.PyJWTError as exc:
        raise QuoteInvalid("quote_id is not a quote this co-op issued") from exc
    if claims["sub"] != rider_id:
        raise QuoteInvalid("the quote was made for another rider")
    if claims["pts"] != points_fingerprint(pickup, dropoff):
        raise QuoteInvalid("the quote was made for another pickup or drop-off")
    version, fee = claims["ver"], claims["fee"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (version, fee)):
        raise QuoteInvalid("quote_id is not a quote this co-op issued")
    return PinnedQuote(fare_rule_version=version, cost_recovery_fee_cents=fee)
