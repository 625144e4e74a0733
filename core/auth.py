"""Bearer tokens and who they name.

Riders and members (drivers) get a signed JWT at sign-up or admission, carrying their id
and role. Operators present the co-op's operator token (``COOP_OPERATOR_TOKEN``),
compared in constant time. A token is checked for signature, expiry and role; whether
a member is still in good standing is checked against the database by the caller.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal, cast

import jwt

from core.errors import NotAuthenticated, WrongRole

Role = Literal["rider", "driver", "operator"]
ROLES: tuple[Role, ...] = ("rider", "driver", "operator")
ALGORITHM = "HS256"
ISSUER = "coopride"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject_id: str
    token_id: str | None = None

    def require(self, *roles: Role) -> Principal:
        if self.role not in roles:
            raise WrongRole(f"this needs role {' or '.join(roles)}, not {self.role}")
        return self


def issue_token(*, secret: str, role: Role, subject_id: str, ttl_s: int) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject_id,
        "role": role,
        "iat": now,
        "exp": now + ttl_s,
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def authenticate(token: str | None, *, secret: str, operator_token: str) -> Principal:
    if not token:
        raise NotAuthenticated("missing bearer token")
    if hmac.compare_digest(token.encode(), operator_token.encode()):
        return Principal(role="operator", subject_id="operator")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise NotAuthenticated("token expired") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthenticated("invalid token") from exc
    role = claims.get("role")
    if role not in ("rider", "driver"):
        raise NotAuthenticated("invalid token role")
    return Principal(
        role=cast(Role, role), subject_id=str(claims["sub"]), token_id=claims.get("jti")
    )


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
