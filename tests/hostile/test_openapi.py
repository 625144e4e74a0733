"""Schemathesis against the running server's ``/openapi.json``: every operation, many
generated requests (valid and invalid), each sent with a token of the role the
operation is for, so the cases get past 401/403 into the handlers.

Every answer must be a non-5xx whose status, content type and body are the ones the
OpenAPI document declares (problem+json for every error). The server is the real
``coopride serve`` on a database and Redis prefix of its own: fuzzed service areas and
budgets must not leak into other tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from core.settings import Settings
from server.harness import Server
from tests.fixtures.isolated import isolated_server
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

# Generated cases per operation (explicit and coverage cases come on top). Enough to
# reach every schema branch of this API; the whole module stays under a minute or so.
EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
@starts_server
def fuzz_server(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with isolated_server(test_settings, tmp_path_factory, "fuzz") as srv:
        yield srv


@pytest.fixture(scope="module")
def tokens(fuzz_server: Server) -> dict[str, str]:
    operator = fuzz_server.settings.operator_token
    with httpx.Client(base_url=fuzz_server.base_url, timeout=10) as http:
        rider = http.post("/v1/riders", json={"name": "Fuzz", "phone": "+1 555 0000"})
        driver = http.post(
            "/v1/drivers",
            json={"name": "Fuzz", "phone": "+1 555 0001", "vehicle": {"plate": "F", "seats": 4}},
            headers={"Authorization": f"Bearer {operator}"},
        )
    assert rider.status_code == 201 and driver.status_code == 201
    return {"rider": rider.json()["token"], "driver": driver.json()["token"], "operator": operator}


def role_for(method: str, path: str) -> str:
    """The role each operation is meant for (api.md)."""
    if (
        path.startswith("/v1/operator/")
        or (method == "POST" and path == "/v1/drivers")
        or (method == "PUT" and path.startswith("/v1/coop/budgets/"))
        or path.endswith("/close")
    ):
        return "operator"
    if (
        path.startswith("/v1/drivers/me")
        or path.endswith(("/arrived", "/start", "/complete"))
        or (method == "POST" and path.startswith("/v1/fares/proposals"))
    ):
        return "driver"
    return "rider"


def _exerciser(
    operation: Any,
    mode: GenerationMode,
    label: str,
    headers: dict[str, str],
    cases: Counter[str],
    statuses: Counter[int],
) -> Any:
    """A hypothesis test over one operation's generated cases."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def exercise(case: Any) -> None:
        response = case.call(headers=headers, timeout=15)
        cases[label] += 1
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    return exercise


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    fuzz_server: Server, tokens: dict[str, str], mode: GenerationMode
) -> None:
    """Valid inputs (positive) and inputs that break the schema (negative), for every
    operation. Failures are collected over all operations, then reported together."""
    api = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    cases: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: dict[str, str] = {}
    no_input: set[str] = set()
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:
        method, path = operation.method.upper(), operation.path
        label = f"{method} {path}"
        headers = {"Authorization": f"Bearer {tokens[role_for(method, path)]}"}

        exercise = _exerciser(operation, mode, label, headers, cases, statuses)
        try:
            exercise()
        except Unsatisfiable:
            # No input of this operation can break its schema (it takes none).
            if mode is not GenerationMode.NEGATIVE:
                raise
            no_input.add(label)
        except Exception as exc:  # one operation's failure must not hide the others'
            failures[label] = f"{type(exc).__name__}: {exc}"[:2000]
    print(
        f"schemathesis {mode.value}: {sum(cases.values())} cases over {len(operations)}"
        f" operations; statuses {dict(sorted(statuses.items()))};"
        f" no invalid input possible for {sorted(no_input)}"
    )
    assert not failures, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
    assert {f"{o.method.upper()} {o.path}" for o in operations} - no_input == set(cases)
    assert len(no_input) <= 6, no_input  # the probes and the fare-rule reads
    assert not [s for s in statuses if s >= 500], statuses
