"""Riders sign themselves up; members (drivers) are admitted by the co-op's operators."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.auth import issue_token
from core.errors import MemberNotFound, MemberRemoved, RiderNotFound
from core.ids import new_id
from core.models import Member, Rider, Vehicle
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
