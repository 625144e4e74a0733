"""Credentials end: tokens expire, can be revoked by their owner, and a suspended or
removed member is shut out at once, its open sockets closed by whichever api process
holds them. Real servers, real sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from core.auth import issue_token
from server.harness import Server, start_server
from tests.fixtures.phones import new_driver, new_rider, open_socket, problem_of
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

# A revocation reaches every socket through Redis pub/sub within milliseconds; generous.
CLOSE_DEADLINE_S = 5.0
# Long enough to connect on a busy machine, short enough to wait for.
TTL_S = 3


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        yield client


@pytest.fixture
@starts_server
def second_api(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Another api process (no dispatcher) beside the shared server: same database,
    same Redis, as behind a load balancer."""
    with start_server(
        server.settings, tmp_path_factory.mktemp("api2") / "server.log", dispatcher=False
    ) as srv:
        yield srv


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def closed_with(
    conn: ClientConnection, timeout: float = CLOSE_DEADLINE_S
) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes; the close code and the frames that came before."""
    frames: list[dict[str, Any]] = []

    async def drain() -> None:
        try:
            while True:
                frames.append(json.loads(await conn.recv()))
        except ConnectionClosed:
            return

    await asyncio.wait_for(drain(), timeout)
    assert conn.close_code is not None
    return conn.close_code, frames


async def refused(server: Server, path: str, token: str) -> tuple[int, list[dict[str, Any]]]:
    async with connect(f"{server.ws_url}{path}", additional_headers=bearer(token)) as conn:
        return await closed_with(conn)


async def test_an_expired_token_is_refused_everywhere(
    http: httpx.AsyncClient, server: Server
) -> None:
    rider_id, _ = await new_rider(http)
    expired = issue_token(
        secret=server.settings.jwt_secret, role="rider", subject_id=rider_id, ttl_s=-1
    )
    r = await http.get("/v1/riders/me", headers=bearer(expired))
    assert r.status_code == 401 and problem_of(r)["type"] == "token-expired"
    assert r.headers["www-authenticate"] == "Bearer"
    code, frames = await refused(server, "/v1/riders/ws", expired)
    assert code == 4401 and frames[-1]["code"] == "token-expired"


async def test_a_socket_closes_when_its_token_expires(
    http: httpx.AsyncClient, server: Server
) -> None:
    rider_id, _ = await new_rider(http)
    short = issue_token(
        secret=server.settings.jwt_secret, role="rider", subject_id=rider_id, ttl_s=TTL_S
    )
    async with connect(f"{server.ws_url}/v1/riders/ws", additional_headers=bearer(short)) as conn:
        await conn.send(json.dumps({"type": "ack", "event_id": 0, "id": 1}))
        assert json.loads(await conn.recv()) == {"type": "ok", "ref": 1}
        opened = time.monotonic()
        code, frames = await closed_with(conn, timeout=10)
    assert code == 4401 and frames[-1]["code"] == "token-expired"
    assert time.monotonic() - opened < TTL_S + 2  # at expiry, not at some later sweep


async def test_a_revoked_token_is_refused_and_its_socket_closed(
    http: httpx.AsyncClient, server: Server, second_api: Server
) -> None:
    rider_id, auth = await new_rider(http)
    token = auth["Authorization"][7:]
    # The same rider on another phone: a second token, which revocation must not touch.
    other = issue_token(
        secret=server.settings.jwt_secret, role="rider", subject_id=rider_id, ttl_s=3600
    )
    async with (
        open_socket(second_api, "/v1/riders/ws", token) as revoked_phone,
        open_socket(second_api, "/v1/riders/ws", other) as other_phone,
    ):
        assert (await revoked_phone.call({"type": "ack", "event_id": 0}))["type"] == "ok"
        assert (await other_phone.call({"type": "ack", "event_id": 0}))["type"] == "ok"
        r = await http.post("/v1/tokens/revoke", headers=auth)  # on the first process
        assert r.status_code == 204, r.text
        code, frames = await closed_with(revoked_phone.conn)
        assert code == 4401 and frames[-1] == {
            "type": "error",
            "code": "token-revoked",
            "detail": "this token was revoked",
        }
        # The other phone's socket is untouched and still answers.
        assert (await other_phone.call({"type": "ack", "event_id": 0}))["type"] == "ok"
    for base in (server, second_api):
        async with httpx.AsyncClient(base_url=base.base_url, timeout=10) as client:
            r = await client.get("/v1/riders/me", headers=auth)
            assert r.status_code == 401 and problem_of(r)["type"] == "token-revoked"
            assert (await client.get("/v1/riders/me", headers=bearer(other))).status_code == 200
    code, frames = await refused(server, "/v1/riders/ws", token)
    assert code == 4401 and frames[-1]["code"] == "token-revoked"
    # Revoking twice is harmless; the operator token is not a revocable token.
    op = bearer(server.settings.operator_token)
    assert (await http.post("/v1/tokens/revoke", headers=auth)).status_code == 401
    assert (await http.post("/v1/tokens/revoke", headers=op)).status_code == 403


async def test_a_removed_member_is_shut_out_across_api_processes(
    http: httpx.AsyncClient, server: Server, second_api: Server
) -> None:
    operator = bearer(server.settings.operator_token)
    driver_id, token = await new_driver(http, server)
    async with open_socket(second_api, "/v1/drivers/ws", token) as phone:
        assert (await phone.call({"type": "status", "status": "online"}))["type"] == "ok"
        r = await http.put(
            f"/v1/operator/members/{driver_id}/standing",
            json={"status": "removed", "reason": "left the co-op"},
            headers=operator,
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "removed" and r.json()["previous"] == "active"
        assert r.json()["removed_at"] is not None
        code, frames = await closed_with(phone.conn)
    assert code == 4403 and frames[-1]["code"] == "member-removed"
    r = await http.get("/v1/drivers/me", headers=bearer(token))
    assert r.status_code == 401 and problem_of(r)["type"] == "member-removed"
    r = await http.post(
        "/v1/fares/proposals/prp_x/ballots", json={"choice": "yes"}, headers=bearer(token)
    )
    assert r.status_code == 401 and problem_of(r)["type"] == "member-removed"
    code, frames = await refused(second_api, "/v1/drivers/ws", token)
    assert code == 4403 and frames[-1]["code"] == "member-removed"
    # Removal is final; the change is in the audit log, which anyone signed in can read.
    r = await http.put(
        f"/v1/operator/members/{driver_id}/standing",
        json={"status": "active", "reason": "oops"},
        headers=operator,
    )
    assert r.status_code == 409 and problem_of(r)["type"] == "membership-ended"
    audit = (await http.get("/v1/coop/audit", headers=operator)).json()
    entries = [e for e in audit["items"] if e["kind"] == "member.standing"]
    while audit["next_after"] is not None:
        audit = (
            await http.get(f"/v1/coop/audit?after={audit['next_after']}", headers=operator)
        ).json()
        entries += [e for e in audit["items"] if e["kind"] == "member.standing"]
    mine = [e["payload"] for e in entries if e["payload"]["member_id"] == driver_id]
    assert [(p["previous"], p["status"]) for p in mine] == [("active", "removed")]


async def test_a_suspended_member_can_be_reinstated(
    http: httpx.AsyncClient, server: Server
) -> None:
    operator = bearer(server.settings.operator_token)
    driver_id, token = await new_driver(http, server)

    async def standing(status: str) -> None:
        r = await http.put(
            f"/v1/operator/members/{driver_id}/standing",
            json={"status": status, "reason": "insurance lapsed"},
            headers=operator,
        )
        assert r.status_code == 200, r.text

    await standing("suspended")
    assert (await http.get("/v1/drivers/me", headers=bearer(token))).status_code == 401
    code, _ = await refused(server, "/v1/drivers/ws", token)
    assert code == 4403
    await standing("active")
    r = await http.get("/v1/drivers/me", headers=bearer(token))
    assert r.status_code == 200 and r.json()["status"] == "active"
    async with open_socket(server, "/v1/drivers/ws", token) as phone:
        assert (await phone.call({"type": "status", "status": "offline"}))["type"] == "ok"
    r = await http.put(
        "/v1/operator/members/drv_nobody/standing",
        json={"status": "suspended", "reason": "x"},
        headers=operator,
    )
    assert r.status_code == 404 and problem_of(r)["type"] == "member-not-found"
