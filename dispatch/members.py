"""A member's standing: operators suspend, reinstate and remove members.

Suspension and removal end every token the member holds at once: the next request is
refused (``core.identity.check_standing``), and every open socket of theirs, on any api
process, is told and closed (4403 ``member-removed``) through the hub. The driver leaves
the live index when its last socket closes. Removal is final. Every change is appended
to the audit log, since who may vote depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.errors import MemberNotFound, MembershipEnded
from core.events import CLOSE_FORBIDDEN, revoked
from core.models import Member
from dispatch.runtime import emit
from fares import audit

Standing = Literal["active", "suspended", "removed"]


@dataclass(frozen=True, slots=True)
class StandingChange:
    member_id: str
    status: str
    previous: str
    removed_at: datetime | None


async def set_standing(
    db: AsyncSession, *, member_id: str, status: Standing, reason: str
) -> StandingChange:
    member = await db.get(Member, member_id, with_for_update=True)
    if member is None:
        raise MemberNotFound(f"no member {member_id}")
    previous = member.status
    if previous == "removed" and status != "removed":
        raise MembershipEnded(f"member {member_id} was removed; removal is final")
    if previous != status:
        member.status = status
        now = utcnow()
        if status == "removed":
            member.removed_at = now
        await audit.append(
            db,
            kind="member.standing",
            payload={
                "member_id": member_id,
                "status": status,
                "previous": previous,
                "reason": reason,
                "at": audit.format_at(now),
            },
        )
    if status != "active":
        emit(
            db,
            revoked(
                "driver",
                member_id,
                code="member-removed",
                detail=f"member {member_id} is {status}",
                close=CLOSE_FORBIDDEN,
                jti=None,
            ),
        )
    return StandingChange(member_id, member.status, previous, member.removed_at)
