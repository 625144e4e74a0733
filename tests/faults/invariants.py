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


async def check_database(dsn: str) -> dict[str, int]:
    """Nothing half-written, nothing doubled. Returns a few counts for the report.

    - every trip has its ``requested`` event, and its status is its latest event's;
    - no trip has two pending or two accepted offers, no driver two pending offers
      or two active trips; an accepted offer's trip names that driver;
    - a trip is ``assigned`` or further exactly when it has an accepted offer;
    - every ledger journal balances (postings sum to zero) and has postings; a
      completed trip has exactly one ``trip`` journal and no other trip has one.
    """
    problems: list[str] = []
    missing_requested = await rows(
        dsn,
        """SELECT t.id FROM trips t WHERE NOT EXISTS
           (SELECT 1 FROM trip_events e WHERE e.trip_id = t.id AND e.status = 'requested')""",
    )
    if missing_requested:
        problems.append(f"trips without a requested event: {missing_requested}")
    status_mismatch = await rows(
        dsn,
        """SELECT t.id, t.status, last.status AS event_status FROM trips t
           JOIN LATERAL (SELECT status FROM trip_events e WHERE e.trip_id = t.id
                         ORDER BY e.id DESC LIMIT 1) last ON true
           WHERE last.status <> t.status""",
    )
    if status_mismatch:
        problems.append(f"trip status differs from its last event: {status_mismatch}")
    doubled = await rows(
        dsn,
        """SELECT trip_id, status, count(*) FROM offers WHERE status IN ('pending', 'accepted')
           GROUP BY trip_id, status HAVING count(*) > 1""",
    )
    if doubled:
        problems.append(f"trips with two live/accepted offers: {doubled}")
    driver_doubled = await rows(
        dsn,
        """SELECT driver_id, count(*) FROM offers WHERE status = 'pending'
           GROUP BY driver_id HAVING count(*) > 1""",
    )
    if driver_doubled:
        problems.append(f"drivers holding two pending offers: {driver_doubled}")
    two_trips = await rows(
        dsn,
        """SELECT driver_id, count(*) FROM trips
           WHERE status IN ('assigned', 'arrived', 'in_progress') AND driver_id IS NOT NULL
           GROUP BY driver_id HAVING count(*) > 1""",
    )
    if two_trips:
        problems.append(f"drivers on two trips: {two_trips}")
    wrong_driver = await rows(
        dsn,
        """SELECT o.id FROM offers o JOIN trips t ON t.id = o.trip_id
           WHERE o.status = 'accepted' AND t.driver_id IS DISTINCT FROM o.driver_id""",
    )
    if wrong_driver:
        problems.append(f"accepted offers whose trip names another driver: {wrong_driver}")
    unoffered = await rows(
        dsn,
        """SELECT t.id, t.status FROM trips t
           WHERE (t.assigned_at IS NOT NULL) <> EXISTS
                 (SELECT 1 FROM offers o WHERE o.trip_id = t.id AND o.status = 'accepted')""",
    )
    if unoffered:
        problems.append(f"assignment without exactly an accepted offer: {unoffered}")
    unbalanced = await rows(
        dsn,
        """SELECT j.id, coalesce(sum(p.amount_cents), 0) AS total, count(p.id) AS n
           FROM ledger_journals j LEFT JOIN ledger_postings p ON p.journal_id = j.id
           GROUP BY j.id HAVING coalesce(sum(p.amount_cents), 0) <> 0 OR count(p.id) = 0""",
    )
    if unbalanced:
        problems.append(f"ledger journals unbalanced or empty: {unbalanced}")
    ledger_mismatch = await rows(
        dsn,
        """SELECT t.id, t.status, count(j.id) FROM trips t
           LEFT JOIN ledger_journals j ON j.trip_id = t.id
           GROUP BY t.id, t.status
           HAVING (t.status = 'completed') <> (count(j.id) = 1)""",
    )
    if ledger_mismatch:
        problems.append(f"completed trips and trip journals disagree: {ledger_mismatch}")
    assert not problems, "\n".join(problems)
    counts = await rows(
        dsn,
        """SELECT (SELECT count(*) FROM trips) AS trips,
                  (SELECT count(*) FROM offers) AS offers,
                  (SELECT count(*) FROM ledger_journals) AS journals""",
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
