"""The co-op's audit log: every governance and money event, hash-chained.

Each entry is ``{seq, at, kind, payload, prev_hash, hash}`` with::

    hash = sha256_hex(prev_hash + JCS({"seq": seq, "at": at, "kind": kind, "payload": payload}))

where JCS is RFC 8785 canonical JSON and the first entry's ``prev_hash`` is 64 zeros.
Anyone holding the entries (``GET /v1/coop/audit``) can recompute the chain; changing,
removing or reordering any entry breaks every hash after it.

The hashing is pure (``canonical_json``, ``entry_hash``, ``ChainCheck``); ``append`` and
``verify_stored`` are the I/O around it. Appends are serialized by a transaction-scoped
advisory lock, taken in the same transaction as the event being recorded, so ``seq`` is
gapless and the chain never forks, and an entry exists exactly when its event committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import utcnow
from core.db import make_engine, make_sessionmaker
from core.models import AuditEntry

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key of the chain head: "coopaudi" in ASCII, so that another
# use of advisory locks in this database is unlikely to collide with it.
CHAIN_LOCK_KEY = 0x636F6F7061756469
# Integers beyond this are not exact in an IEEE double, which RFC 8785 (like every
# JavaScript client) reads numbers as; they are refused rather than silently rounded.
MAX_SAFE_INTEGER = 2**53 - 1


# -- canonical JSON (RFC 8785) -----------------------------------------------------------


def _string(value: str) -> str:
    # ECMAScript JSON.stringify: escape '"', '\\' and C0 controls (short forms where
    # they exist, else lowercase \\u00xx); everything else is written as itself.
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif code < 0x20:
            out.append(_SHORT_ESCAPES.get(ch, f"\\u{code:04x}"))
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError("lone surrogates cannot be written as UTF-8")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _utf16_key(key: str) -> bytes:
    # RFC 8785 sorts member names by their UTF-16 code units; big-endian UTF-16 bytes
    # compare in exactly that order.
    return key.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is beyond 2**53 - 1")
        out.append(str(value))
    elif isinstance(value, float):
        # Money is integer cents; a float in the record would hash as whatever a
        # client's number formatting makes of it.
        raise TypeError(f"audit payloads hold no floats (got {value!r})")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        out.append("{")
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings (got {key!r})")
        for i, key in enumerate(sorted(keys, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> str:
    """RFC 8785 canonical JSON of a value made of None, bools, integers, strings, lists
    and string-keyed mappings: members sorted by UTF-16 code units, no whitespace.
    Floats are refused (TypeError), as are integers an IEEE double cannot hold exactly
    and lone surrogates (ValueError)."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def entry_hash(prev_hash: str, *, seq: int, at: str, kind: str, payload: Any) -> str:
    body = canonical_json({"seq": seq, "at": at, "kind": kind, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def format_at(moment: datetime) -> str:
    """The one rendering of an entry's time: ISO 8601 in UTC, fixed width, microseconds
    and ``Z`` (``2026-11-22T01:15:15.120000Z``). Stored as this text and hashed as it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- the chain, pure ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    at: str
    kind: str
    payload: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.reason}"


class ChainCheck:
    """Feeds entries in order and reports the first one that breaks the chain: a gap or
    disorder in ``seq``, a ``prev_hash`` that is not the previous entry's hash, or a hash
    that does not recompute (the entry was altered)."""

    def __init__(self) -> None:
        self.count = 0
        self.head = GENESIS_HASH
        self._next_seq = 1

    def check(self, entry: Entry) -> ChainBreak | None:
        if entry.seq != self._next_seq:
            return ChainBreak(entry.seq, f"expected seq {self._next_seq}")
        if entry.prev_hash != self.head:
            return ChainBreak(entry.seq, "prev_hash is not the previous entry's hash")
        try:
            recomputed = entry_hash(
                entry.prev_hash,
                seq=entry.seq,
                at=entry.at,
                kind=entry.kind,
                payload=entry.payload,
            )
        except (TypeError, ValueError) as exc:
            return ChainBreak(entry.seq, f"payload is not canonical JSON: {exc}")
        if recomputed != entry.hash:
            return ChainBreak(entry.seq, "hash does not match the entry's contents")
        self.count += 1
        self.head = entry.hash
        self._next_seq += 1
        return None


def verify_entries(entries: Sequence[Entry]) -> ChainBreak | None:
    """The first break in a whole chain (starting at seq 1), or None."""
    chain = ChainCheck()
    for entry in entries:
        broken = chain.check(entry)
        if broken is not None:
            return broken
    return None


# -- the chain, stored ---------------------------------------------------------------------


async def lock_chain(db: AsyncSession) -> None:
    """Hold the chain head until this transaction ends. ``append`` takes it; a caller
    that must also number something else in chain order (a rule version) takes it
    first. Re-entrant within one transaction."""
    await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})


async def append(
    db: AsyncSession, *, kind: str, payload: Mapping[str, Any], now: datetime | None = None
) -> Entry:
    """Append one entry, in the caller's transaction: it exists iff that commits."""
    body = dict(payload)
    canonical_json(body)  # refuse what cannot be hashed before taking the lock
    await lock_chain(db)
    head = (
        await db.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).one_or_none()
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
    at = format_at(now or utcnow())
    digest = entry_hash(prev_hash, seq=seq, at=at, kind=kind, payload=body)
    db.add(AuditEntry(seq=seq, at=at, kind=kind, payload=body, prev_hash=prev_hash, hash=digest))
    await db.flush()
    return Entry(seq, at, kind, body, prev_hash, digest)


def _entry(row: AuditEntry) -> Entry:
    return Entry(row.seq, row.at, row.kind, row.payload, row.prev_hash, row.hash)


async def entries_after(db: AsyncSession, *, after: int, limit: int) -> list[Entry]:
    """Up to ``limit`` entries with ``seq > after``, oldest first."""
    rows = await db.scalars(
        select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(limit)
    )
    return [_entry(r) for r in rows]


@dataclass(frozen=True, slots=True)
class Verified:
    count: int
    head: str


async def verify_stored(db: AsyncSession, *, batch_size: int = 1000) -> ChainBreak | Verified:
    """Recompute the whole stored chain, a batch at a time: the first break, or how many
    entries verified and the head hash."""
    chain = ChainCheck()
    after = 0
    while True:
        batch = await entries_after(db, after=after, limit=batch_size)
        for entry in batch:
            broken = chain.check(entry)
            if broken is not None:
                return broken
        if len(batch) < batch_size:
            return Verified(chain.count, chain.head)
        after = batch[-1].seq


async def verify_database(database_url: str) -> ChainBreak | Verified:
    """``coopride audit verify``: the chain of the database at ``database_url``."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as db:
            return await verify_stored(db)
    finally:
        await engine.dispose()
