"""The ORM models are the migrated schema: a column generated from ``core.fare_terms``
(or any model change) without its migration fails here, and the opening fare rule the
application names is the one migration 0001 seeded."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import core.models  # noqa: F401  (registers every table)
from core.fare_terms import OPENING_TERMS
from core.models import FareRule
from core.models.base import Base
from core.models.fare_rule import terms_of


def _ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # PostGIS's own tables (spatial_ref_sys, …) are not ours (as in migrations/env.py).
    return not (type_ == "table" and reflected and compare_to is None)


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": _ours})
    return list(compare_metadata(context, Base.metadata))


@pytest.fixture
async def engine(database_url: str) -> Any:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


async def test_the_models_are_the_migrated_schema(engine: Any) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []


async def test_the_opening_rule_is_the_one_migration_0001_seeded(engine: Any) -> None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(FareRule).where(FareRule.version == 1))).one()
    assert terms_of(row) == OPENING_TERMS
