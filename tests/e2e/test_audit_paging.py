"""The audit log pages and says so: ``next_cursor`` leads to the next page and is null on
the last one, even when the log ends exactly at a page's end."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.harness import Server
from tests.fixtures.audit import verify_chain
from tests.fixtures.phones import new_driver, new_rider, problem_of

pytestmark = pytest.mark.e2e


async def _page(http: httpx.AsyncClient, auth: dict[str, str], **params: Any) -> dict[str, Any]:
    r = await http.get("/v1/coop/audit", params=params, headers=auth)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def test_audit_pages_by_cursor(server: Server) -> None:
    operator = {"Authorization": f"Bearer {server.settings.operator_token}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        member_id, _ = await new_driver(http, server)
        for standing in ("suspended", "active", "suspended", "active"):
            r = await http.put(
                f"/v1/operator/members/{member_id}/standing",
                json={"status": standing, "reason": "paging test"},
                headers=operator,
            )
            assert r.status_code == 200, r.text
        _, rider = await new_rider(http)

        whole = await _page(http, rider, limit=1000)
        assert whole["next_cursor"] is None and whole["next_after"] is None
        everything = whole["items"]
        assert len(everything) >= 4

        # Two at a time by cursor: every entry once, in order, and the chain holds.
        paged: list[dict[str, Any]] = []
        page = await _page(http, rider, limit=2)
        pages = 1
        while True:
            assert len(page["items"]) <= 2
            paged.extend(page["items"])
            if page["next_cursor"] is None:
                break
            assert isinstance(page["next_cursor"], str)
            assert page["next_after"] == page["items"][-1]["seq"]
            page = await _page(http, rider, cursor=page["next_cursor"], limit=2)
            pages += 1
        assert pages > 1
        assert paged == everything
        verify_chain(paged)

        # A page that ends exactly where the log ends is the last: null, not a cursor to
        # an empty page.
        last_two = await _page(http, rider, cursor=str(everything[-3]["seq"]), limit=2)
        assert [e["seq"] for e in last_two["items"]] == [e["seq"] for e in everything[-2:]]
        assert last_two["next_cursor"] is None and last_two["next_after"] is None

        r = await http.get("/v1/coop/audit", params={"cursor": "seq-3"}, headers=rider)
        assert r.status_code == 422 and problem_of(r)["type"] == "invalid-input"
        r = await http.get("/v1/coop/audit", params={"limit": 1001}, headers=rider)
        assert r.status_code == 422
