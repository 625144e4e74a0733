"""core.auth: bearer tokens, who they name, and the Authorization header."""

from __future__ import annotations

import secrets
import time

import jwt
import pytest

from core.auth import (
    ALGORITHM,
    ISSUER,
    Principal,
    authenticate,
    bearer_from_header,
    issue_token,
)
from core.errors import NotAuthenticated, WrongRole

SECRET = secrets.token_urlsafe(48)
OTHER_SECRET = secrets.token_urlsafe(48)
OPERATOR = secrets.token_urlsafe(24)


def auth(token: str | None) -> Principal:
    return authenticate(token, secret=SECRET, operator_token=OPERATOR)


@pytest.mark.parametrize("role", ["rider", "driver"])
def test_issue_and_authenticate_round_trip(role: str) -> None:
    token = issue_token(secret=SECRET, role=role, subject_id=f"{role}_123", ttl_s=3600)  # type: ignore[arg-type]
    who = auth(token)
    assert who.role == role
    assert who.subject_id == f"{role}_123"
    assert who.token_id is not None and len(who.token_id) == 16

    claims = jwt.decode(token, SECRET, algorithms=[ALGORITHM], issuer=ISSUER)
    assert claims["sub"] == f"{role}_123"
    assert claims["role"] == role
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60


def test_each_token_has_its_own_id() -> None:
    a = issue_token(secret=SECRET, role="rider", subject_id="rdr_1", ttl_s=60)
    b = issue_token(secret=SECRET, role="rider", subject_id="rdr_1", ttl_s=60)
    assert auth(a).token_id != auth(b).token_id


def test_operator_token_is_recognised() -> None:
    assert auth(OPERATOR) == Principal(role="operator", subject_id="operator")


def test_almost_the_operator_token_is_not() -> None:
    with pytest.raises(NotAuthenticated):
        auth(OPERATOR[:-1])
    with pytest.raises(NotAuthenticated):
        auth(OPERATOR + "x")


def test_expired_token_is_refused() -> None:
    token = issue_token(secret=SECRET, role="rider", subject_id="rdr_1", ttl_s=-5)
    with pytest.raises(NotAuthenticated, match="expired") as info:
        auth(token)
    assert info.value.slug == "token-expired"


def test_the_principal_carries_the_expiry_for_the_socket_timer() -> None:
    token = issue_token(secret=SECRET, role="driver", subject_id="drv_1", ttl_s=120)
    who = auth(token)
    assert who.expires_at is not None and abs(who.expires_at - (time.time() + 120)) < 5


def test_token_signed_with_another_secret_is_refused() -> None:
    token = issue_token(secret=OTHER_SECRET, role="driver", subject_id="drv_1", ttl_s=3600)
    with pytest.raises(NotAuthenticated):
        auth(token)


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "a.b.c", "Bearer x", "eyJhbGciOiJIUzI1NiJ9..", "\u00e9\u00e9\u00e9", "x" * 5000],
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(NotAuthenticated):
        auth(garbage)


@pytest.mark.parametrize("missing", [None, ""])
def test_missing_token_is_refused(missing: str | None) -> None:
    with pytest.raises(NotAuthenticated, match="missing"):
        auth(missing)


def _signed(claims: dict[str, object], *, algorithm: str = ALGORITHM) -> str:
    return jwt.encode(claims, SECRET, algorithm=algorithm)


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": ISSUER,
        "sub": "drv_1",
        "role": "driver",
        "iat": now,
        "exp": now + 600,
        "jti": "0123456789abcdef",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_well_signed_token_cannot_claim_operator() -> None:
    with pytest.raises(NotAuthenticated):
        auth(_signed(_claims(role="operator")))


@pytest.mark.parametrize(
    "overrides",
    [
        {"role": None},
        {"role": "admin"},
        {"iss": "someone-else"},
        {"iss": None},
        {"exp": None},
        {"sub": None},
        {"jti": None},  # a token that cannot be revoked is not taken
    ],
)
def test_tokens_missing_or_bending_a_claim_are_refused(overrides: dict[str, object]) -> None:
    assert auth(_signed(_claims())).role == "driver"  # the base token is fine
    with pytest.raises(NotAuthenticated):
        auth(_signed(_claims(**overrides)))


def test_unsigned_and_other_algorithm_tokens_are_refused() -> None:
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(NotAuthenticated):
        auth(unsigned)
    hs512 = jwt.encode(_claims(), SECRET, algorithm="HS512")
    with pytest.raises(NotAuthenticated):
        auth(hs512)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("rider", ("driver",)),
        ("driver", ("rider",)),
        ("operator", ("rider", "driver")),
        ("rider", ("operator",)),
    ],
)
def test_require_refuses_the_wrong_role(role: str, allowed: tuple[str, ...]) -> None:
    who = Principal(role=role, subject_id="x")  # type: ignore[arg-type]
    with pytest.raises(WrongRole) as info:
        who.require(*allowed)  # type: ignore[arg-type]
    assert info.value.slug == "wrong-role"


def test_require_returns_the_principal_for_a_right_role() -> None:
    who = Principal(role="driver", subject_id="drv_1")
    assert who.require("driver") is who
    assert who.require("rider", "driver") is who
    with pytest.raises(WrongRole):
        who.require()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc  ", "abc"),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("Bearerabc", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_from_header(header: str | None, expected: str | None) -> None:
    assert bearer_from_header(header) == expected
