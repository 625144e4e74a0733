"""Before any phone starts: is the target a coopride server that takes this plan?

Each check that fails raises ``SettingError`` with the one line the operator reads (what
is wrong and what to set), so a setting that cannot work stops the test at once instead
of failing every phone in a loop. Also sets the server up for the plan (the demo's
Manhattan service area when the plan keeps riders there and the server has none).
Plain Python over ``httpx``; the locustfile runs it under gevent, ``coopride loadtest``
before it starts Locust.
"""

from __future__ import annotations

import httpx

from loadtests.options import SettingError
from loadtests.plan import LoadPlan

TIMEOUT_S = 10.0
SERVICE_AREAS = "/v1/operator/service-areas"


def check(
    base_url: str | None,
    plan: LoadPlan,
    *,
    timeout_s: float = TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Raises ``SettingError`` unless ``base_url`` is a ready coopride server that takes
    the plan's operator token; creates the service area the plan needs."""
    if not base_url:
        raise SettingError("no server to test: give --host http://127.0.0.1:PORT")
    url = base_url.rstrip("/")
    with httpx.Client(base_url=url, timeout=timeout_s, transport=transport) as client:
        try:
            ready = client.get("/readyz")
            if ready.status_code == 404 or not _is_coopride(client):
                raise SettingError(f"{url} is not a coopride server (no coopride API there)")
        except httpx.HTTPError as exc:
            raise SettingError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
        if ready.status_code != 200:
            said = f"{ready.status_code}: {ready.text[:200]}"
            raise SettingError(f"{url} is not ready (/readyz {said})")
        auth = {"Authorization": f"Bearer {plan.operator_token}"}
        areas = client.get(SERVICE_AREAS, headers=auth)
        if areas.status_code in (401, 403):
            raise SettingError(
                f"the operator token is refused by {url} ({areas.status_code}): give the "
                "server's COOP_OPERATOR_TOKEN as --operator-token or in COOP_OPERATOR_TOKEN"
            )
        if areas.status_code != 200:
            raise SettingError(f"{url}{SERVICE_AREAS} answered {areas.status_code}")
        if plan.area == "manhattan" and not areas.json():
            from simulation.city import MANHATTAN

            made = client.post(
                SERVICE_AREAS,
                headers=auth,
                json={"name": "Manhattan (load test)", "polygon": MANHATTAN},
            )
            if made.status_code >= 300:
                raise SettingError(
                    f"creating the Manhattan service area on {url} failed ({made.status_code})"
                )


def _is_coopride(client: httpx.Client) -> bool:
    r = client.get("/openapi.json")
    if r.status_code != 200:
        return False
    try:
        return bool(r.json().get("info", {}).get("title") == "coopride")
    except ValueError:
        return False


def signup_limited(phones: int) -> str:
    """The line for a rider sign-up refused by the per-address limit."""
    return (
        "rider sign-ups are refused (429): the server allows fewer sign-ups a minute from "
        f"one address than this run's {phones} rider phones, which all sign up from here; "
        f"start the server with COOP_SIGNUP_RATE_PER_MIN={max(phones, 1) * 2} (at least "
        f"{phones}), or give fewer phones (--rider-pool)"
    )


def admit_refused(status: int) -> str:
    """The line for a driver the operator API refused to admit (401 or 403)."""
    return (
        f"admitting a driver is refused ({status}): give the server's "
        "COOP_OPERATOR_TOKEN as --operator-token or in COOP_OPERATOR_TOKEN"
    )
