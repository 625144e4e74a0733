"""The wire contract as files (server/contract.py): every HTTP operation has a stable,
hand-chosen operationId, and the committed ``openapi.json`` is what the server serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server import contract

ROOT = Path(__file__).resolve().parents[2]
# camelCase verb + noun(s): what a generated client names its method.
CAMEL_CASE = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)+$")
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return contract.openapi_document()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def test_every_operation_has_a_hand_named_camel_case_operation_id(
    openapi: dict[str, Any],
) -> None:
    ops = operations(openapi)
    assert len(ops) >= 40  # every route of api.md and its extensions, not an empty document
    ids = [operation.get("operationId") for _, _, operation in ops]
    bad = [
        f"{method} {path}: {operation.get('operationId')!r}"
        for method, path, operation in ops
        if not isinstance(operation.get("operationId"), str)
        or not CAMEL_CASE.match(operation["operationId"])
    ]
    assert not bad, "operation_id=... missing or not camelCase on: " + "; ".join(bad)
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"operationIds used twice: {duplicates}"


def test_contract_operation_ids_are_the_documented_names(openapi: dict[str, Any]) -> None:
    """Clients generated from the contract call these names: renaming one breaks them."""
    by_route = {(method, path): op["operationId"] for method, path, op in operations(openapi)}
    assert by_route[("POST", "/v1/riders")] == "signUpRider"
    assert by_route[("POST", "/v1/quotes")] == "createQuote"
    assert by_route[("POST", "/v1/trips")] == "requestTrip"
    assert by_route[("GET", "/v1/trips/{trip_id}")] == "getTrip"
    assert by_route[("POST", "/v1/trips/{trip_id}/cancel")] == "cancelTrip"
    assert by_route[("POST", "/v1/fares/proposals/{proposal_id}/ballots")] == "castBallot"
