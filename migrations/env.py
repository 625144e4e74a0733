"""Alembic environment: async engine from the app's settings, metadata from core.models."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import core.models  # noqa: F401  (registers every table)
from core.models.base import Base
from core.settings import asyncpg_url, get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().database_url


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # PostGIS's own tables (spatial_ref_sys, tiger, topology) are not ours.
    return not (type_ == "table" and reflected and compare_to is None)


def _progress(*, ctx: object, step: Any, heads: object, run_args: object) -> None:
    """A line per migration applied, so a long upgrade shows where it is."""
    verb = "applied" if step.is_upgrade else "reverted"
    doc = (getattr(step.up_revision, "doc", "") or "").strip().splitlines()
    print(f"[migrate] {verb} {step.up_revision_id}: {doc[0] if doc else ''}", flush=True)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include_object,
        compare_type=True,
        on_version_apply=_progress,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(asyncpg_url(_url()))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
