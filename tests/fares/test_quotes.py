"""fares.quotes: a quote_id pins a rule version for one rider, two points, ten minutes."""

from __future__ import annotations

import time

import pytest

from core.auth import authenticate, issue_token
from core.errors import NotAuthenticated, QuoteInvalid
from fares.quotes import QUOTE_TTL_S, PinnedQuote, read_quote, sign_quote
from geo.point import LatLng

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
PICKUP = LatLng(40.7549, -73.984)
DROPOFF = LatLng(40.7465, -74.0014)
PINNED = PinnedQuote(fare_rule_version=3, cost_recovery_fee_cents=45)


def sign(**overrides: object) -> str:
    args: dict[str, object] = {
        "secret": SECRET,
        "rider_id": "rdr_1",
        "pickup": PICKUP,
        "dropoff": DROPOFF,
        "pinned": PINNED,
    }
    args.update(overrides)
    return sign_quote(**args)[0]  # type: ignore[arg-type]


def read(token: str, **overrides: object) -> PinnedQuote:
    args: dict[str, object] = {
        "secret": SECRET,
        "rider_id": "rdr_1",
        "pickup": PICKUP,
        "dropoff": DROPOFF,
    }
    args.update(overrides)
    return read_quote(token, **args)  # type: ignore[arg-type]


def test_a_quote_pins_its_version_and_fee() -> None:
    token, expires_at = sign_quote(
        secret=SECRET, rider_id="rdr_1", pickup=PICKUP, dropoff=DROPOFF, pinned=PINNED
    )
    assert read(token) == PINNED
    assert abs(expires_at.timestamp() - (time.time() + QUOTE_TTL_S)) < 5


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"rider_id": "rdr_2"}, "another rider"),
        ({"pickup": LatLng(40.7549, -73.9841)}, "another pickup"),
        ({"dropoff": PICKUP, "pickup": DROPOFF}, "another pickup"),
        ({"secret": "another-secret-that-is-long-enough-for-hs256"}, "not a quote"),
    ],
)
def test_a_quote_is_refused_for_anything_else(overrides: dict[str, object], detail: str) -> None:
    with pytest.raises(QuoteInvalid, match=detail):
        read(sign(), **overrides)


def test_an_expired_or_mangled_quote_is_refused() -> None:
    with pytest.raises(QuoteInvalid, match="expired"):
        read(sign(now_s=int(time.time()) - QUOTE_TTL_S - 1))
    token = sign()
    with pytest.raises(QuoteInvalid):
        read(token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    with pytest.raises(QuoteInvalid):
        read("not-a-token")


def test_quote_ids_and_bearer_tokens_do_not_pass_for_each_other() -> None:
    with pytest.raises(NotAuthenticated):
        authenticate(sign(), secret=SECRET, operator_token="operator-token")
    bearer = issue_token(secret=SECRET, role="rider", subject_id="rdr_1", ttl_s=60)
    with pytest.raises(QuoteInvalid):
        read(bearer)
