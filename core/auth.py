"""Bearer tokens and who they name.

Riders and members (drivers) get a signed JWT at sign-up or admission, carrying their id
and role. Operators present the co-op's operator token (``COOP_OPERATOR_TOKEN``),
compared in constant time. A token is checked here for signature, expiry and role;
whether it was revoked (its ``jti``) and whether a member is still in good standing is
checked against the database by ``core.identity.check_standing`` (docs/security.md).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal, cast

import jwt

from core.errors import NotAuthenticated, TokenExpired, WrongRole

Role = Literal["rider", "driver", "operator"]
ROLES: tuple[Role, ...] = ("rider", "driver", "operator")
ALGORITHM = "HS256"
ISSUER = "coopride"


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    subject_id: str
    token_id: str | None = None
    # Epoch seconds; None for the operator token, which does not expire.
    expires_at: int | None = None

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
            # Every token we issue names itself (jti), so that it can be revoked.
            options={"require": ["exp", "sub", "iss", "jti"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("token expired") from exc
    except jwt.PyJWTError as exc:
        raise NotAuthenticated("invalid token") from exc
    role = claims.get("role")
    if role not in ("rider", "driver"):
        raise NotAuthenticated("invalid token role")
    return Principal(
        role=cast(Role, role),
        subject_id=str(claims["sub"]),
        token_id=str(claims["jti"]),
        expires_at=int(claims["exp"]),
    )


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
