"""The wire contract as files (server/contract.py): every HTTP operation has a stable,
hand-chosen operationId, and the committed ``openapi.json`` is what the server serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import cli, contract
from server.harness import Server

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


@pytest.mark.parametrize("name", sorted(contract.DOCUMENTS))
def test_served_contract_is_the_committed_file(server: Server, name: str) -> None:
    """What the real server serves (``/openapi.json``, ``/asyncapi.json``; test settings,
    not the defaults the files are generated with) is the committed file, byte for byte
    once rendered. Against a served document, so it runs with the e2e tests on the
    locked libraries: another FastAPI or pydantic writes the same contract differently
    (``make test-lowest``)."""
    served = httpx.get(f"{server.base_url}/{name}", timeout=30)
    assert served.status_code == 200, served.text
    committed = (ROOT / name).read_text(encoding="utf-8")
    assert contract.render(served.json()) == committed, (
        f"{name} is stale: the code's contract changed. Run `{contract.REGENERATE}` "
        "and commit the file with the change."
    )


def test_contract_command_writes_and_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["contract", "check", "--dir", str(tmp_path)]) == 1
    assert "is stale: run make contract" in capsys.readouterr().out
    assert cli.main(["contract", "write", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(contract.DOCUMENTS)
    assert cli.main(["contract", "check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "openapi.json").write_text("{}\n", encoding="utf-8")
    assert cli.main(["contract", "check", "--dir", str(tmp_path)]) == 1
