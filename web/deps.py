"""FastAPI dependencies shared by both audiences' APIs: the runtime, a unit of work per
request, and who is calling.

The session commits when the handler returns and before the response is sent
(``scope="function"``), and publishes the request's events only after that commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from core import identity
from core.auth import Principal, authenticate
from web.runtime import ApiRuntime


def get_runtime(conn: HTTPConnection) -> ApiRuntime:
    runtime: ApiRuntime = conn.app.state.runtime
    return runtime


RuntimeDep = Annotated[ApiRuntime, Depends(get_runtime)]


async def db_session(rt: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with rt.unit_of_work() as db:
        yield db


Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


_bearer = HTTPBearer(auto_error=False, description="A rider, driver or operator token")


async def principal(
    rt: RuntimeDep,
    db: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Who is calling: a well-signed, unexpired token (``core.auth``) that was not
    revoked, of a member still in good standing (``core.identity.check_standing``)."""
    who = authenticate(
        credentials.credentials if credentials else None,
        secret=rt.settings.jwt_secret,
        operator_token=rt.settings.operator_token,
    )
    await identity.check_standing(db, who)
    return who


CurrentPrincipal = Annotated[Principal, Depends(principal)]


def rider(who: CurrentPrincipal) -> Principal:
    return who.require("rider")


def driver(who: CurrentPrincipal) -> Principal:
    return who.require("driver")


def operator(who: CurrentPrincipal) -> Principal:
    return who.require("operator")


CurrentRider = Annotated[Principal, Depends(rider)]
CurrentDriver = Annotated[Principal, Depends(driver)]
CurrentOperator = Annotated[Principal, Depends(operator)]
