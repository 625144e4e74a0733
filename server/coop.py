"""The co-op's public record: the hash-chained audit log, readable by anyone signed in
(``fares.audit``; how to verify it is in ``docs/governance.md``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from dispatch.deps import CurrentPrincipal, Session
from fares import audit

router = APIRouter(tags=["coop"])


class AuditEntryOut(BaseModel):
    seq: int
    at: str = Field(description="Exactly the string that was hashed (ISO 8601, UTC).")
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str = Field(
        description='sha256_hex(prev_hash + JCS({"seq", "at", "kind", "payload"})), '
        "JCS being RFC 8785 canonical JSON; the first prev_hash is 64 zeros."
    )


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_after: int | None = Field(
        description="Pass as ?after= for the next page; null when this page is the end."
    )


@router.get("/v1/coop/audit")
async def audit_log(
    who: CurrentPrincipal,
    db: Session,
    after: int = Query(0, ge=0, description="Entries with seq greater than this."),
    limit: int = Query(500, ge=1, le=1000),
) -> AuditPage:
    entries = await audit.entries_after(db, after=after, limit=limit)
    items = [
        AuditEntryOut(
            seq=e.seq, at=e.at, kind=e.kind, payload=e.payload, prev_hash=e.prev_hash, hash=e.hash
        )
        for e in entries
    ]
    next_after = entries[-1].seq if len(entries) == limit else None
    return AuditPage(items=items, next_after=next_after)
