"""Riders sign themselves up; members (drivers) are admitted by the co-op's operators.
Tokens can be revoked, and a member's standing ends every token it holds."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import Principal, issue_token
from core.db import outbox
from core.errors import MemberNotFound, MemberRemoved, RiderNotFound, TokenRevoked
from core.events import CLOSE_UNAUTHENTICATED, revoked
from core.ids import new_id
from core.models import Member, RevokedToken, Rider, Vehicle
from core.settings import Settings


async def sign_up_rider(
    db: AsyncSession, *, settings: Settings, name: str, phone: str
) -> tuple[Rider, str]:
    rider = Rider(id=new_id("rdr"), name=name, phone=phone)
    db.add(rider)
    await db.flush()
    token = issue_token(
        secret=settings.jwt_secret, role="rider", subject_id=rider.id, ttl_s=settings.token_ttl_s
    )
    return rider, token


async def admit_member(
    db: AsyncSession,
    *,
    settings: Settings,
    name: str,
    phone: str,
    plate: str,
    seats: int,
) -> tuple[Member, str]:
    member = Member(id=new_id("drv"), name=name, phone=phone, status="active")
    member.vehicles = [Vehicle(id=new_id("veh"), plate=plate, seats=seats)]
    db.add(member)
    await db.flush()
    token = issue_token(
        secret=settings.jwt_secret,
        role="driver",
        subject_id=member.id,
        ttl_s=settings.token_ttl_s,
    )
    return member, token


async def get_rider(db: AsyncSession, *, rider_id: str) -> Rider:
    rider = await db.get(Rider, rider_id)
    if rider is None:
        raise RiderNotFound(f"no rider {rider_id}")
    return rider


async def get_member(db: AsyncSession, *, member_id: str, active: bool = True) -> Member:
    member = await db.get(Member, member_id)
    if member is None:
        raise MemberNotFound(f"no member {member_id}")
    if active and member.status != "active":
        raise MemberRemoved(f"member {member_id} is {member.status}")
    return member


async def check_standing(db: AsyncSession, who: Principal) -> None:
    """Refuse a revoked token, and a member's token once the member is suspended,
    removed or unknown: one query, on every authenticated request and socket."""
    if who.role == "operator" or who.token_id is None:
        return
    revoked = exists().where(RevokedToken.jti == who.token_id)
    if who.role == "rider":
        if await db.scalar(select(revoked)):
            raise TokenRevoked("this token was revoked")
        return
    row = (
        await db.execute(
            select(
                select(Member.status).where(Member.id == who.subject_id).scalar_subquery(), revoked
            )
        )
    ).one()
    status, is_revoked = row
    if is_revoked:
        raise TokenRevoked("this token was revoked")
    if status is None:
        raise MemberNotFound(f"no member {who.subject_id}")
    if status != "active":
        raise MemberRemoved(f"member {who.subject_id} is {status}")


async def revoke_token(db: AsyncSession, who: Principal) -> None:
    """Put the token on the denylist until it would have expired anyway."""
    if who.token_id is None or who.expires_at is None:
        return
    # Rows of tokens that have expired meanwhile are no longer needed: the signature
    # check refuses those. The table stays as small as the live revocations.
    await db.execute(delete(RevokedToken).where(RevokedToken.expires_at < datetime.now(UTC)))
    await db.execute(
        pg_insert(RevokedToken)
        .values(
            jti=who.token_id,
            subject_id=who.subject_id,
            role=who.role,
            expires_at=datetime.fromtimestamp(who.expires_at, UTC),
        )
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
    )
    # Sockets opened with this token close too, on whichever api process holds them.
    outbox(db).append(
        revoked(
            who.role,
            who.subject_id,
            code="token-revoked",
            detail="this token was revoked",
            close=CLOSE_UNAUTHENTICATED,
            jti=who.token_id,
        )
    )
