"""What must hold in PostgreSQL after any fault: read straight from the database, not
through the API that was just under fault."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from tests.conftest import Server


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str = "condition"
) -> None:
    """Poll ``predicate`` (another process changes what it reads) until true or fail."""
    try:
        async with asyncio.timeout(timeout_s):
            while not await predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout_s} s") from None


async def wait_ready(server: Server, timeout_s: float = 30) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=3) as http:
                return (await http.get(f"{server.base_url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_for(ready, timeout_s, "/readyz 200")


async def rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def check_database(dsn: str, trip_ids: list[str] | None = None) -> dict[str, int]:
    """Nothing half-written, nothing doubled. Returns a few counts for the report.
    ``trip_ids`` limits the check to those trips (a database other tests share).

    - every trip has its ``requested`` event, and its status is its latest event's;
    - no trip has two pending or two accepted offers, no driver two pending offers
      or two active trips; an accepted offer's trip names that driver;
    - a trip was assigned exactly when it has an accepted offer;
    - every ledger journal balances (postings sum to zero) and has postings; a
      completed trip has exactly one ``trip`` journal and no other trip has one.
    """
    only = "" if trip_ids is None else "AND t.id = ANY($1::text[])"
    args: list[object] = [] if trip_ids is None else [trip_ids]
    checks = {
        "trips without a requested event": f"""
            SELECT t.id FROM trips t WHERE NOT EXISTS
              (SELECT 1 FROM trip_events e WHERE e.trip_id = t.id AND e.status = 'requested')
            {only}""",
        "trip status differs from its last event": f"""
            SELECT t.id, t.status, last.status AS event_status FROM trips t
            JOIN LATERAL (SELECT status FROM trip_events e WHERE e.trip_id = t.id
                          ORDER BY e.id DESC LIMIT 1) last ON true
            WHERE last.status <> t.status {only}""",
        "trips with two pending or two accepted offers": f"""
            SELECT o.trip_id, o.status, count(*) FROM offers o JOIN trips t ON t.id = o.trip_id
            WHERE o.status IN ('pending', 'accepted') {only}
            GROUP BY o.trip_id, o.status HAVING count(*) > 1""",
        "drivers holding two pending offers": f"""
            SELECT o.driver_id, count(*) FROM offers o JOIN trips t ON t.id = o.trip_id
            WHERE o.status = 'pending' {only}
            GROUP BY o.driver_id HAVING count(*) > 1""",
        "drivers on two trips": f"""
            SELECT t.driver_id, count(*) FROM trips t
            WHERE t.status IN ('assigned', 'arrived', 'in_progress') {only}
            GROUP BY t.driver_id HAVING count(*) > 1""",
        "accepted offers whose trip names another driver": f"""
            SELECT o.id FROM offers o JOIN trips t ON t.id = o.trip_id
            WHERE o.status = 'accepted' AND t.driver_id IS DISTINCT FROM o.driver_id {only}""",
        "assignment without an accepted offer, or the reverse": f"""
            SELECT t.id, t.status FROM trips t
            WHERE (t.assigned_at IS NOT NULL) <> EXISTS
                  (SELECT 1 FROM offers o WHERE o.trip_id = t.id AND o.status = 'accepted')
            {only}""",
        "trip journals unbalanced or empty": f"""
            SELECT j.id, coalesce(sum(p.amount_cents), 0) AS total, count(p.id) AS n
            FROM ledger_journals j JOIN trips t ON t.id = j.trip_id
            LEFT JOIN ledger_postings p ON p.journal_id = j.id
            WHERE true {only}
            GROUP BY j.id HAVING coalesce(sum(p.amount_cents), 0) <> 0 OR count(p.id) = 0""",
        "completed trips and trip journals disagree": f"""
            SELECT t.id, t.status, count(j.id) FROM trips t
            LEFT JOIN ledger_journals j ON j.trip_id = t.id
            WHERE true {only}
            GROUP BY t.id, t.status
            HAVING (t.status = 'completed') <> (count(j.id) = 1)""",
    }
    problems = []
    for name, sql in checks.items():
        found = await rows(dsn, sql, *args)
        if found:
            problems.append(f"{name}: {[dict(r) for r in found]}")
    assert not problems, "\n".join(problems)
    if trip_ids is None:
        unbalanced = await rows(
            dsn,
            """SELECT j.id FROM ledger_journals j
               LEFT JOIN ledger_postings p ON p.journal_id = j.id
               GROUP BY j.id HAVING coalesce(sum(p.amount_cents), 0) <> 0 OR count(p.id) = 0""",
        )
        assert not unbalanced, f"ledger journals unbalanced or empty: {unbalanced}"
    counts = await rows(
        dsn,
        f"""SELECT (SELECT count(*) FROM trips t WHERE true {only}) AS trips,
                   (SELECT count(*) FROM offers o JOIN trips t ON t.id = o.trip_id
                    WHERE true {only}) AS offers""",
        *args,
    )
    return dict(counts[0])


async def offers_of(dsn: str, trip_id: str) -> list[asyncpg.Record]:
    return await rows(
        dsn,
        "SELECT id, driver_id, status FROM offers WHERE trip_id = $1 ORDER BY created_at, id",
        trip_id,
    )


async def trip_row(dsn: str, trip_id: str) -> asyncpg.Record:
    found = await rows(dsn, "SELECT * FROM trips WHERE id = $1", trip_id)
    assert found, f"trip {trip_id} is not in the database"
    return found[0]
