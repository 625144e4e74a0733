"""Behind a real reverse proxy, as ``deploy/`` ships it: Debian's nginx with the site of
``deploy/nginx/`` (rendered by its script, a self-signed certificate) in front of two
``coopride serve --no-dispatcher`` processes and one ``coopride dispatcher``.

A whole trip runs through it over HTTPS and WSS. The per-address sign-up limit counts
the rider's address, which only nginx saw: every request reaches the api processes from
nginx's 127.0.0.1. The phones here connect from other loopback addresses (127.0.0.x),
as riders from different places, so the address the limit counts tells which one it
believed. A client that is not a trusted proxy gets nowhere with a forged
``X-Forwarded-For``, directly or through nginx.

One api process trusts nginx through ``COOP_TRUSTED_PROXIES``, the other through
``coopride serve --forwarded-allow-ips``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from core.fare_terms import FareRuleTerms, from_wire_view
from core.keys import Keys
from core.settings import Settings
from fares.pricing import price
from server.harness import (
    Process,
    Server,
    free_port,
    start,
    start_dispatcher,
    start_serve,
    wait_ready,
)
from tests.fixtures.isolated import isolated_settings
from tests.fixtures.phones import (
    CHELSEA,
    MIDTOWN,
    NEAR_MIDTOWN,
    new_driver,
    new_rider,
    open_socket,
    phone_number,
    problem_of,
)
from tests.fixtures.proxy import OwnNginx, own_nginx
from tests.fixtures.servers import starts_server

pytestmark = pytest.mark.e2e

SIGNUPS = 3
PROXY = "127.0.0.1"  # where nginx's requests reach the api processes from


@dataclass(frozen=True)
class Deployment:
    settings: Settings
    nginx: OwnNginx
    # The api as the phones reach it: through nginx (https://, wss://).
    proxied: Server
    apis: tuple[Process, Process]
    # Each api process without nginx (http://127.0.0.1:PORT).
    direct_urls: tuple[str, str]

    def phone(self, address: str) -> httpx.AsyncClient:
        """A phone at ``address`` (a 127.x.y.z) talking to nginx over HTTPS."""
        return _client(self.nginx.base_url, address, verify=self.nginx.tls)


def _client(base_url: str, address: str, *, verify: Any = True) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address, verify=verify)
    return httpx.AsyncClient(base_url=base_url, timeout=10, transport=transport)


@pytest.fixture(scope="module")
@starts_server
def deployment(
    test_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    logs = tmp_path_factory.mktemp("proxy")
    with (
        isolated_settings(
            test_settings, "proxy", signup_rate_per_min=SIGNUPS, trusted_proxies=PROXY
        ) as settings,
        ExitStack() as stops,
    ):
        ports = (free_port(), free_port())
        while ports[1] == ports[0]:
            ports = (ports[0], free_port())
        # Access logs (INFO) show the address each process believed.
        first = start_serve(
            settings, logs / "api-1.log", port=ports[0], dispatcher=False, log_level="info"
        )
        stops.callback(first.stop)
        second = start(
            [
                *("serve", "--host", "127.0.0.1", "--port", str(ports[1]), "--no-dispatcher"),
                *("--log-level", "info", "--forwarded-allow-ips", PROXY),
            ],
            settings.model_copy(update={"trusted_proxies": ""}),
            logs / "api-2.log",
        )
        stops.callback(second.stop)
        dispatcher = start_dispatcher(settings, logs / "dispatcher.log")
        stops.callback(dispatcher.stop)
        direct = (f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}")
        for url in direct:
            wait_ready(url, (first, second, dispatcher))
        nginx = stops.enter_context(own_nginx([f"127.0.0.1:{port}" for port in ports]))
        proxied = Server(nginx.base_url, nginx.ws_url, settings, first)
        yield Deployment(settings, nginx, proxied, (first, second), direct)


def access_lines(process: Process, request: str, end: str = " HTTP") -> list[str]:
    """The api's log lines for ``request`` (``"POST /v1/riders"``): uvicorn's access log,
    and its line for each socket accepted (``"WebSocket /v1/drivers/ws"``, ``end=""``)."""
    lines = process.log_tail(10_000).splitlines()
    return [line for line in lines if f'\\"{request}{end}' in line]


def clients_of(process: Process, request: str, end: str = " HTTP") -> set[str]:
    """The client addresses the api logged for ``request``."""
    found = set()
    for line in access_lines(process, request, end):
        match = re.search(r'"msg": ?"([0-9a-f.:]+?):\d+ - ', line)
        assert match, line
        found.add(match.group(1))
    return found


def assert_limited(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert problem_of(r)["type"] == "rate-limited"


async def test_a_whole_trip_through_nginx_over_https_and_wss(deployment: Deployment) -> None:
    server, tls = deployment.proxied, deployment.nginx.tls
    rider_address, driver_address = "127.0.0.31", "127.0.0.32"
    async with deployment.phone(rider_address) as http:
        # The operator admits a driver; a rider signs up: both over HTTPS through nginx.
        driver_id, driver_token = await new_driver(http, server)
        rider_id, rider_auth = await new_rider(http)
        driver_auth = {"Authorization": f"Bearer {driver_token}"}

        async with (
            open_socket(
                server, "/v1/drivers/ws", driver_token, tls=tls, local_address=driver_address
            ) as driver,
            open_socket(
                server,
                "/v1/riders/ws",
                rider_auth["Authorization"][7:],
                header=False,
                tls=tls,
                local_address=rider_address,
            ) as rider,
        ):
            assert (await driver.call({"type": "status", "status": "online"}))["type"] == "ok"
            located = await driver.call({"type": "location", **NEAR_MIDTOWN, "accuracy_m": 8})
            assert located["type"] == "ok"

            q = await http.post(
                "/v1/quotes", json={"pickup": MIDTOWN, "dropoff": CHELSEA}, headers=rider_auth
            )
            assert q.status_code == 200, q.text
            quote = q.json()
            assert quote["pickup_eta_s"] is not None

            r = await http.post(
                "/v1/trips",
                json={"pickup": MIDTOWN, "dropoff": CHELSEA},
                headers={**rider_auth, "Idempotency-Key": "proxied-trip"},
            )
            assert r.status_code == 201, r.text
            trip = r.json()
            trip_id = trip["id"]
            assert trip["status"] == "requested" and trip["rider_id"] == rider_id
            assert trip["fare"] == quote["fare"]
            assert (await rider.expect("trip.updated"))["trip"]["status"] == "requested"

            # The dispatcher (a process of its own) offers it over the driver's socket,
            # which nginx holds open to one of the two api processes.
            offer = await driver.expect("offer", trip_id=trip_id)
            assert offer["fare"] == trip["fare"]
            await driver.send({"type": "accept", "offer_id": offer["offer_id"]})
            assigned = await driver.expect("trip.assigned")
            assert assigned["trip"]["id"] == trip_id and assigned["trip"]["driver_id"] == driver_id
            assert (await rider.expect("trip.updated"))["trip"]["status"] == "assigned"

            # The rider watches the driver come, through the other socket.
            await driver.call({"type": "location", "lat": 40.7555, "lng": -73.9850})
            moving = await rider.expect("driver.location")
            assert moving["trip_id"] == trip_id and moving["lat"] == 40.7555

            for path, status in (
                ("arrived", "arrived"),
                ("start", "in_progress"),
                ("complete", "completed"),
            ):
                r = await http.post(f"/v1/trips/{trip_id}/{path}", headers=driver_auth)
                assert r.status_code == 200, r.text
                assert r.json()["status"] == status
                assert (await rider.expect("trip.updated"))["trip"]["status"] == status

        # The receipt, to the cent: the rule's price of the quoted trip, all of it the
        # driver's but the cost recovery, no commission.
        receipt = (await http.get(f"/v1/trips/{trip_id}/receipt", headers=rider_auth)).json()
        rule = (await http.get("/v1/fares/rules/current")).json()
        expected = price(
            FareRuleTerms(**from_wire_view(rule), version=rule["version"]),
            distance_m=quote["distance_m"],
            duration_s=quote["duration_s"],
            cost_recovery_fee_cents=quote["fare"]["breakdown"]["cost_recovery_cents"],
        )
        assert receipt["trip_id"] == trip_id
        assert receipt["fare_rule_version"] == rule["version"] == quote["fare_rule_version"]
        assert receipt["total_cents"] == expected.total_cents == trip["fare"]["total_cents"]
        assert receipt["driver_earnings_cents"] == expected.driver_earnings_cents
        assert receipt["cost_recovery_cents"] == expected.cost_recovery_cents
        assert receipt["platform_commission_cents"] == 0

    # nginx shared the trip's requests between the two api processes, and each logged
    # the rider's address for them, not nginx's.
    requests = [
        "POST /v1/quotes",
        "POST /v1/trips",
        *(f"POST /v1/trips/{trip_id}/{step}" for step in ("arrived", "start", "complete")),
        f"GET /v1/trips/{trip_id}/receipt",
        "GET /v1/fares/rules/current",
    ]
    for api in deployment.apis:
        seen = set().union(*(clients_of(api, request) for request in requests))
        assert seen == {rider_address}, (seen, api.log_tail())
    # The sockets too: each process logged the phone's address for the one it took.
    sockets = set().union(
        *(
            clients_of(api, f"WebSocket /v1/{audience}/ws", end="")
            for api in deployment.apis
            for audience in ("drivers", "riders")
        )
    )
    assert sockets == {driver_address, rider_address}


async def test_the_sign_up_limit_counts_the_riders_address_not_the_proxys(
    deployment: Deployment,
) -> None:
    crowded, elsewhere, forger = "127.0.0.41", "127.0.0.42", "127.0.0.43"
    async with deployment.phone(crowded) as http:
        for _ in range(SIGNUPS):
            await new_rider(http)
        assert_limited(await http.post("/v1/riders", json={"name": "Bot", "phone": "+1 555 0001"}))
        # A forged X-Forwarded-For through nginx: nginx appends the address it saw, and the
        # api takes the right-most address that is not a trusted proxy, which is that one.
        assert_limited(
            await http.post(
                "/v1/riders",
                json={"name": "Bot", "phone": "+1 555 0002"},
                headers={"X-Forwarded-For": "198.51.100.7"},
            )
        )
    # Every one of those reached the api from nginx's 127.0.0.1; a rider elsewhere is not
    # held back, so the limit counted the riders' addresses, not the proxy's.
    async with deployment.phone(elsewhere) as http:
        await new_rider(http)

    # Straight to each api process, a client that is not a trusted proxy: its header is
    # ignored, both to dodge its own limit and to be counted as somebody else.
    for url in deployment.direct_urls:
        async with _client(url, crowded) as direct:
            assert_limited(
                await direct.post(
                    "/v1/riders",
                    json={"name": "Bot", "phone": "+1 555 0003"},
                    headers={"X-Forwarded-For": "198.51.100.8"},
                )
            )
    # Believed, these would spend the rest of the rider elsewhere's sign-ups and be
    # refused; they are counted against the forger's own address instead.
    async with _client(deployment.direct_urls[0], forger) as direct:
        for _ in range(SIGNUPS):
            r = await direct.post(
                "/v1/riders",
                json={"name": "Framed", "phone": phone_number()},
                headers={"X-Forwarded-For": elsewhere},
            )
            assert r.status_code == 201, r.text

    # The buckets are the riders' addresses; none is nginx's, none a forged one.
    keys = Keys(deployment.settings.redis_prefix)
    redis = Redis.from_url(deployment.settings.redis_url, decode_responses=True)
    try:
        for address in (crowded, elsewhere, forger):
            assert await redis.exists(keys.rate("sign-ups", address)), address
        for address in (PROXY, "198.51.100.7", "198.51.100.8"):
            assert not await redis.exists(keys.rate("sign-ups", address)), address
    finally:
        await redis.aclose()

    # And the access logs say the same.
    logged = set().union(*(clients_of(api, "POST /v1/riders") for api in deployment.apis))
    assert {crowded, elsewhere, forger} <= logged
    assert not logged & {PROXY, "198.51.100.7", "198.51.100.8"}


async def test_plain_http_only_redirects_and_each_request_has_one_id(
    deployment: Deployment,
) -> None:
    nginx = deployment.nginx
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"http://127.0.0.1:{nginx.http_port}/v1/riders/me")
        assert r.status_code == 301
        assert r.headers["location"] == "https://127.0.0.1/v1/riders/me"
    async with deployment.phone("127.0.0.51") as http:
        # nginx gives a request its id, which the api logs and returns...
        r = await http.get("/readyz")
        assert r.status_code == 200, r.text
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
        # ... unless the phone sent its own.
        r = await http.get("/readyz", headers={"X-Request-ID": "phone-report-7"})
        assert r.headers["x-request-id"] == "phone-report-7"
