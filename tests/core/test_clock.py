"""``core.clock.iso``: the wire's one timestamp format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from pydantic import BaseModel

from core.clock import iso


class _Answer(BaseModel):
    at: datetime


def test_iso_writes_z_in_utc() -> None:
    new_york = timezone(timedelta(hours=-5))
    moment = datetime(2026, 11, 22, 1, 15, 3, 871520, tzinfo=new_york)
    assert iso(moment) == "2026-11-22T06:15:03.871520Z"
    assert iso(datetime(2026, 11, 22, 1, 15, tzinfo=UTC)) == "2026-11-22T01:15:00Z"
    assert iso(None) is None


def test_iso_matches_what_http_writes() -> None:
    for moment in (
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
    ):
        http = _Answer(at=moment).model_dump_json()
        assert http == f'{{"at":"{iso(moment)}"}}'
