"""fares.audit: RFC 8785 canonical JSON, the hash chain, and the stored log that nobody
can rewrite unnoticed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.models.audit import APPEND_ONLY_TRIGGER
from core.settings import Settings
from dispatch.runtime import Runtime
from fares import audit
from fares.audit import (
    GENESIS_HASH,
    ChainBreak,
    ChainCheck,
    Entry,
    Verified,
    canonical_json,
    entry_hash,
    verify_entries,
)
from server.harness import ROOT, libpq_url
from tests.fixtures.isolated import isolated_database

# -- canonical JSON -----------------------------------------------------------------------


def test_rfc8785_sorts_members_by_utf16_code_units() -> None:
    # The example of RFC 8785 section 3.2.3: U+1F600 is the surrogate pair D83D DE00,
    # which sorts before U+FB33 in UTF-16 although it is after it in code points.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_canonical_json_is_compact_sorted_and_escapes_like_ecmascript() -> None:
    assert canonical_json({"b": [1, True, None], "a": {"d": "x", "c": -5}}) == (
        '{"a":{"c":-5,"d":"x"},"b":[1,true,null]}'
    )
    assert canonical_json('\u0000\b\t\n\f\r\u001f"\\/\u007f é €') == (
        '"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\u007f é €"'
    )
    assert canonical_json([]) == "[]" and canonical_json({}) == "{}"
    assert canonical_json(2**53 - 1) == "9007199254740991"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.5, TypeError),
        ({"amount": 2.0}, TypeError),
        (2**53, ValueError),
        ({1: "x"}, TypeError),
        ("\ud800", ValueError),
        (b"bytes", TypeError),
    ],
)
def test_canonical_json_refuses_what_it_cannot_hash_exactly(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        canonical_json(value)


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"')

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_round_trips_and_is_stable(value: Any) -> None:
    text_ = canonical_json(value)
    assert json.loads(text_) == value
    assert canonical_json(json.loads(text_)) == text_
    # No whitespace between tokens; inside a string it is the value's own.
    between_tokens = _STRING_LITERAL.sub('""', text_)
    assert not any(c.isspace() for c in between_tokens), text_


def test_entry_hash_is_sha256_of_prev_hash_and_the_canonical_entry() -> None:
    payload = {"version": 2, "currency": "USD", "proposal_id": None}
    at = "2026-11-22T01:15:15.120000Z"
    body = (
        '{"at":"2026-11-22T01:15:15.120000Z","kind":"rule.adopted",'
        '"payload":{"currency":"USD","proposal_id":null,"version":2},"seq":7}'
    )
    expected = hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()
    assert entry_hash(GENESIS_HASH, seq=7, at=at, kind="rule.adopted", payload=payload) == (
        expected
    )


# -- the chain, pure -----------------------------------------------------------------------


def build_chain(payloads: list[dict[str, Any]]) -> list[Entry]:
    entries = []
    prev = GENESIS_HASH
    for seq, payload in enumerate(payloads, start=1):
        at = f"2026-11-22T01:00:{seq % 60:02d}.000000Z"
        h = entry_hash(prev, seq=seq, at=at, kind="test", payload=payload)
        entries.append(Entry(seq, at, "test", payload, prev, h))
        prev = h
    return entries


PAYLOADS = st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 9), max_size=3),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(PAYLOADS, st.data())
def test_any_single_change_breaks_the_chain_where_it_was_made(
    payloads: list[dict[str, Any]], data: st.DataObject
) -> None:
    chain = build_chain(payloads)
    assert verify_entries(chain) is None
    i = data.draw(st.integers(0, len(chain) - 1))
    entry = chain[i]
    field = data.draw(st.sampled_from(["payload", "at", "kind", "prev_hash", "hash"]))
    changed = {
        "payload": replace(entry, payload={**entry.payload, "z": 1}),
        "at": replace(entry, at=entry.at.replace("2026", "2025")),
        "kind": replace(entry, kind="tampered"),
        "prev_hash": replace(entry, prev_hash="f" * 64),
        "hash": replace(entry, hash="e" * 64),
    }[field]
    tampered = [*chain[:i], changed, *chain[i + 1 :]]
    broken = verify_entries(tampered)
    assert broken is not None and broken.seq == entry.seq


def test_gaps_reordering_and_truncated_starts_are_caught() -> None:
    chain = build_chain([{"n": n} for n in range(5)])
    assert verify_entries([chain[0], chain[2]]) == ChainBreak(3, "expected seq 2")
    assert verify_entries([chain[1], chain[0]]) == ChainBreak(2, "expected seq 1")
    assert verify_entries(chain[1:]) is not None
    check = ChainCheck()
    for entry in chain:
        assert check.check(entry) is None
    assert check.count == 5 and check.head == chain[-1].hash


# -- the stored chain ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audit_db(base_settings: Settings) -> Iterator[str]:
    with isolated_database(base_settings.database_url, "audit") as url:
        yield url


@pytest.fixture
async def rt(settings: Settings, audit_db: str) -> AsyncIterator[Runtime]:
    runtime = Runtime.create(settings.model_copy(update={"database_url": audit_db}))
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.close()


async def verify(rt: Runtime) -> ChainBreak | Verified:
    async with rt.sessions() as db:
        return await audit.verify_stored(db, batch_size=7)


def run_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "audit", "verify"],
        env={**os.environ, "COOP_DATABASE_URL": database_url},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_chain_starts_with_the_rule_in_force(rt: Runtime) -> None:
    async with rt.sessions() as db:
        first = (await audit.entries_after(db, after=0, limit=1))[0]
    assert (first.seq, first.kind, first.prev_hash) == (1, "rule.adopted", GENESIS_HASH)
    assert first.payload["version"] == 1 and first.payload["base_cents"] == 250
    assert first.payload["fairness_weight_permille"] == 0
    assert isinstance(await verify(rt), Verified)


async def test_concurrent_appends_get_gapless_seqs_and_one_chain(rt: Runtime) -> None:
    async def one(n: int) -> audit.Entry:
        async with rt.unit_of_work() as db:
            return await audit.append(db, kind="test.concurrent", payload={"n": n, "s": "é"})

    before = await verify(rt)
    assert isinstance(before, Verified)
    made = await asyncio.gather(*(one(n) for n in range(25)))
    assert sorted(e.seq for e in made) == list(range(before.count + 1, before.count + 26))
    after = await verify(rt)
    assert isinstance(after, Verified) and after.count == before.count + 25
    # A rolled-back append leaves no trace and no gap.
    with pytest.raises(RuntimeError):
        async with rt.unit_of_work() as db:
            await audit.append(db, kind="test.rolled-back", payload={})
            raise RuntimeError("the event it recorded did not happen")
    async with rt.unit_of_work() as db:
        entry = await audit.append(db, kind="test.after-rollback", payload={})
    assert entry.seq == after.count + 1


async def test_floats_never_enter_the_log(rt: Runtime) -> None:
    async with rt.unit_of_work() as db:
        with pytest.raises(TypeError):
            await audit.append(db, kind="test.float", payload={"amount": 1.5})


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET kind = 'rewritten' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
        "UPDATE fare_rules SET base_cents = 1 WHERE version = 1",
        "DELETE FROM fare_rules WHERE version = 1",
    ],
)
async def test_the_application_cannot_rewrite_the_log_or_a_rule(
    rt: Runtime, statement: str
) -> None:
    with pytest.raises(DBAPIError, match="append-only"):
        async with rt.unit_of_work() as db:
            await db.execute(text(statement))


async def superuser_execute(database_url: str, *statements: str) -> None:
    """What only the table's owner (or a superuser) can do: switch the trigger off."""
    conn = await asyncpg.connect(libpq_url(database_url), timeout=10)
    try:
        async with conn.transaction():
            for sql in statements:
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_tampering_with_a_row_is_caught(rt: Runtime, audit_db: str) -> None:
    async with rt.unit_of_work() as db:
        target = await audit.append(db, kind="ballot.cast", payload={"choice": "yes"})
        await audit.append(db, kind="test.after", payload={"n": 1})
    assert isinstance(await verify(rt), Verified)
    assert run_cli(audit_db).returncode == 0

    def rewrite(payload: str) -> tuple[str, ...]:
        return (
            f"ALTER TABLE audit_log DISABLE TRIGGER {APPEND_ONLY_TRIGGER}",
            f"UPDATE audit_log SET payload = '{payload}'::jsonb WHERE seq = {target.seq}",
            f"ALTER TABLE audit_log ENABLE TRIGGER {APPEND_ONLY_TRIGGER}",
        )

    await superuser_execute(audit_db, *rewrite('{"choice": "no"}'))
    try:
        broken = await verify(rt)
        assert broken == ChainBreak(target.seq, "hash does not match the entry's contents")
        cli = run_cli(audit_db)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert f"broken at seq {target.seq}" in cli.stdout
    finally:
        await superuser_execute(audit_db, *rewrite('{"choice": "yes"}'))
    assert isinstance(await verify(rt), Verified)


async def test_a_removed_row_is_caught(rt: Runtime, audit_db: str) -> None:
    async with rt.unit_of_work() as db:
        gone = await audit.append(db, kind="test.removed", payload={"n": 1})
        await audit.append(db, kind="test.after", payload={"n": 2})
    row = (
        f"({gone.seq}, '{gone.at}', '{gone.kind}', '{json.dumps(gone.payload)}'::jsonb, "
        f"'{gone.prev_hash}', '{gone.hash}')"
    )
    await superuser_execute(
        audit_db,
        f"ALTER TABLE audit_log DISABLE TRIGGER {APPEND_ONLY_TRIGGER}",
        f"DELETE FROM audit_log WHERE seq = {gone.seq}",
        f"ALTER TABLE audit_log ENABLE TRIGGER {APPEND_ONLY_TRIGGER}",
    )
    try:
        assert await verify(rt) == ChainBreak(gone.seq + 1, f"expected seq {gone.seq}")
    finally:
        await superuser_execute(
            audit_db,
            f"INSERT INTO audit_log (seq, at, kind, payload, prev_hash, hash) VALUES {row}",
        )
    assert isinstance(await verify(rt), Verified)
