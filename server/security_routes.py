"""Ending credentials: a phone revokes its own token (signing out, or a lost phone), and
operators set a member's standing (suspend, reinstate, remove). docs/security.md."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from core import identity
from dispatch import members
from web.deps import CurrentOperator, CurrentPrincipal, Session
from web.schemas import RequestIn

router = APIRouter(tags=["security"])


@router.post(
    "/v1/tokens/revoke", operation_id="revokeToken", status_code=status.HTTP_204_NO_CONTENT
)
async def revoke_token(who: CurrentPrincipal, db: Session) -> Response:
    """Revoke the bearer token of this request (by its ``jti``): every later request with
    it is 401 ``token-revoked`` and every socket opened with it closes (4401). A rider or
    a member signs up or is admitted again for a new token."""
    who.require("rider", "driver")
    await identity.revoke_token(db, who)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class StandingIn(RequestIn):
    status: Literal["active", "suspended", "removed"]
    reason: str = Field(min_length=1, max_length=1000)


class StandingOut(BaseModel):
    member_id: str
    status: str
    previous: str
    removed_at: datetime | None


@router.put("/v1/operator/members/{member_id}/standing", operation_id="setMemberStanding")
async def set_standing(
    member_id: str, body: StandingIn, who: CurrentOperator, db: Session
) -> StandingOut:
    """Suspend, reinstate or remove a member. Suspended and removed members' tokens stop
    working at once and their sockets close (4403 ``member-removed``); removal is final
    (409 ``membership-ended`` on reinstating)."""
    change = await members.set_standing(
        db, member_id=member_id, status=body.status, reason=body.reason
    )
    return StandingOut(
        member_id=change.member_id,
        status=change.status,
        previous=change.previous,
        removed_at=change.removed_at,
    )
