"""Settings, read from the environment (``COOP_`` prefix) or ``.env``.

The names are part of the wire contract (``api.md``): operators and load tests set them.
Placeholder secrets are accepted only in development, so a deployment that forgot to
set them refuses to start instead of running with a guessable key.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development defaults, refused anywhere else. The JWT one is long only so that the
# HMAC key-length check stays quiet in development.
DEV_JWT_SECRET = "change-me-development-only-jwt-secret"
DEV_OPERATOR_TOKEN = "change-me"
PLACEHOLDER_SECRETS = frozenset(
    {"change-me", "changethis", "secret", "", DEV_JWT_SECRET, DEV_OPERATOR_TOKEN}
)

# The database driver: the async engine, the migrations and the harness all use asyncpg.
ASYNC_SCHEME = "postgresql+asyncpg"
# What COOP_DATABASE_URL may start with: a plain libpq URL gets the driver chosen here.
POSTGRES_SCHEMES = frozenset({"postgresql", "postgres", ASYNC_SCHEME})


def asyncpg_url(url: str) -> str:
    """``url`` for SQLAlchemy's asyncpg dialect: ``postgresql://`` and ``postgres://``
    (libpq's spellings, what a hosting provider hands out) get the asyncpg driver, and
    libpq's ``sslmode`` becomes asyncpg's ``ssl``. Any other scheme is refused with a
    message that names the setting and the fix."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if "://" in url and scheme.startswith(("postgresql+", "postgres+")) and scheme != ASYNC_SCHEME:
        raise ValueError(
            f"COOP_DATABASE_URL names the driver '{scheme.partition('+')[2]}', but coopride "
            "uses asyncpg: start it with postgresql:// (or postgresql+asyncpg://)"
        )
    if "://" not in url or scheme not in POSTGRES_SCHEMES:
        given = f"the scheme '{parts.scheme}://'" if parts.scheme else "no scheme"
        raise ValueError(
            f"COOP_DATABASE_URL has {given}, but coopride needs PostgreSQL: set it to "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (the asyncpg driver is chosen "
            "for you)"
        )
    query = parts.query
    if "sslmode=" in query:
        pairs = [("ssl" if k == "sslmode" else k, v) for k, v in parse_qsl(query, True)]
        query = urlencode(pairs, quote_via=quote)
    return urlunsplit(parts._replace(scheme=ASYNC_SCHEME, query=query))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COOP_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"

    database_url: str = "postgresql+asyncpg://coopride:coopride@127.0.0.1:5432/coopride"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis key and channel starts with this, so test runs (and several co-ops
    # sharing one Redis) never see each other's state.
    redis_prefix: str = "coop:"

    operator_token: str = DEV_OPERATOR_TOKEN
    jwt_secret: str = DEV_JWT_SECRET
    # A phone keeps its token for a month; revocation (member removal) is checked
    # separately, so expiry only bounds how long a stolen token stays useful.
    token_ttl_s: int = Field(default=30 * 24 * 3600, gt=0)

    dispatch_batch_s: float = Field(default=2.0, gt=0)
    # "batched": one optimal assignment per window (dispatch.solver); "greedy": each
    # request in arrival order takes its nearest free driver (the baseline).
    dispatch_policy: Literal["batched", "greedy"] = "batched"
    offer_timeout_s: float = Field(default=15.0, gt=0)
    # An offer whose driver has no socket open this long is withdrawn and the trip
    # re-dispatched: a phone that drops in a tunnel has a few seconds to come back, but
    # the rider does not wait out the whole offer for a driver who cannot hear it.
    offer_disconnect_grace_s: float = Field(default=5.0, gt=0)
    # Each api process holds a lease in Redis, renewed every third of this; its drivers'
    # sockets count only while it lasts. A process that dies without closing them (a
    # SIGKILL, a lost machine) stops counting this long after its last renewal, and
    # its drivers then count as disconnected (dispatch/presence/sockets.py).
    process_lease_s: float = Field(default=6.0, gt=0)
    driver_stale_s: float = Field(default=30.0, gt=0)
    max_pickup_eta_s: int = Field(default=900, gt=0)
    vote_min_window_s: int = Field(default=86400, ge=0)
    vote_quorum: float = Field(default=0.25, ge=0, le=1)
    trip_request_timeout_s: float = Field(default=300.0, gt=0)
    # A rider may cancel free of charge this long after a driver accepted; later, or once
    # the driver has arrived, the fare rule's cancellation fee goes to the driver.
    cancellation_grace_s: float = Field(default=120.0, ge=0)

    # How pickup ETAs and trip legs are estimated (geo/eta/, docs/eta.md): "learned"
    # (durations learned from real observed trips, corrected live; not yet the default:
    # it cannot see one-way streets, so it misranks short pickups), "calibrated"
    # (detour and pace fitted per cell and hour), "road" (routes on the Midtown OSM
    # graph where it covers both ends), or "straight" (one detour factor and speed).
    eta_model: Literal["learned", "calibrated", "road", "straight"] = "calibrated"
    # How a quote estimates the rider's trip (its duration prices the fare's time part):
    # the same choices; "learned" by default, the model fitted to real trips (a median
    # error of 18% on held-out trips against 30% for "calibrated", docs/eta.md), read
    # from its trees as plain arrays, so api processes do not load scikit-learn.
    trip_eta_model: Literal["learned", "calibrated", "road", "straight"] = "learned"
    # The folder of real data files (demand, road network, observed trips, the fitted ETA
    # model; core/data.py, data/README.md). Unset: the data the project ships.
    data_dir: Path | None = None

    h3_resolution: int = Field(default=8, ge=0, le=15)
    # Where to wait (dispatch/guidance.py): the dispatcher rebuilds the demand forecast
    # from the last four weeks of trips this often, and pushes `demand.map` frames to
    # idle drivers this often.
    guidance_forecast_refresh_s: float = Field(default=600.0, gt=0)
    guidance_push_s: float = Field(default=60.0, gt=0)
    # A fix worse than this is too vague to dispatch on (a phone indoors can report
    # kilometres); the frame is refused rather than silently moving the driver.
    max_location_accuracy_m: float = Field(default=200.0, gt=0)
    # A phone clock a little ahead of ours is normal; further ahead is a bad frame.
    max_clock_skew_s: float = Field(default=5.0, ge=0)

    # -- abuse limits (core/ratelimit.py, docs/security.md). Token buckets in Redis, so
    # they hold across api processes. Each allows a burst of its size, refilled evenly.
    # Sign-ups per client address: a phone signs up once; a carrier NAT puts many
    # phones behind one address, so this is generous, yet stops scripted mass sign-up.
    signup_rate_per_min: int = Field(default=60, gt=0)
    # Trip requests per rider (retries with the same Idempotency-Key are free): a rider
    # asks for a few rides an hour at most.
    trip_request_rate_per_min: int = Field(default=10, gt=0)
    # Quotes per rider: an app re-quotes as the rider moves the pins.
    quote_rate_per_min: int = Field(default=60, gt=0)
    # Location frames per driver: a phone reports every 1-4 s; the burst lets a phone
    # that buffered fixes in a tunnel flush them. Checked inside the location script.
    location_rate_per_s: float = Field(default=2.0, gt=0)
    location_burst: int = Field(default=60, gt=0)
    # Largest HTTP request body taken (413 above it): a service area of the maximum
    # 10,000 vertices is ~450 KB of GeoJSON; nothing else comes close.
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)

    # The reverse proxies (nginx, a load balancer) whose ``X-Forwarded-For`` and
    # ``X-Forwarded-Proto`` are believed: IP addresses or networks, comma-separated
    # (``127.0.0.1`` for nginx on the same machine). A request from one of them is taken
    # to come from the address the proxy says; from anyone else, the header is ignored.
    # Empty (the default): no proxy is trusted, the peer address is the client's.
    # ``coopride serve --forwarded-allow-ips`` overrides it (docs/deployment.md).
    trusted_proxies: str = ""

    # Serves /v1/bench/noop-ws (receive a frame, ack it): the baseline the ingest
    # benchmark measures the real driver socket against. Off unless asked for.
    bench_endpoints: bool = False

    # The operator dashboard (/ops) draws on a plain projection with no map tiles, so it
    # works offline; set a tile URL template (``https://tiles.example/{z}/{x}/{y}.png``)
    # and its attribution to draw the hexes over a street map.
    ops_tile_url: str | None = None
    ops_tile_attribution: str = ""

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        return ",".join(trusted_proxies(value))

    @field_validator("database_url")
    @classmethod
    def _asyncpg_driver(cls, url: str) -> str:
        return asyncpg_url(url)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment != "development":
            for name in ("jwt_secret", "operator_token"):
                if getattr(self, name).strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(
                        f"COOP_{name.upper()} is a placeholder; set a real secret "
                        f"outside development (COOP_ENVIRONMENT={self.environment})"
                    )
            if len(self.jwt_secret) < 32:
                raise ValueError("COOP_JWT_SECRET must be at least 32 characters")
        return self

    @model_validator(mode="after")
    def _requests_outlive_an_offer(self) -> Settings:
        # The planner offers a request only while it has more than an offer's answer
        # time and a batch left (dispatch.batch.planner.will_expire); a shorter request
        # timeout would leave every request to expire unoffered.
        if self.trip_request_timeout_s <= self.offer_timeout_s + self.dispatch_batch_s:
            raise ValueError(
                "COOP_TRIP_REQUEST_TIMEOUT_S must exceed COOP_OFFER_TIMEOUT_S + "
                "COOP_DISPATCH_BATCH_S, or no request could ever be offered"
            )
        return self


def trusted_proxies(value: str) -> tuple[str, ...]:
    """The addresses and networks of a comma-separated list, normalised; a ValueError
    names anything else. A typo must not quietly trust nobody (or somebody else), and
    ``*`` (trust every peer) is refused: anyone who reaches the api directly could then
    choose the address their sign-ups are counted against."""
    entries = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        if item == "*":
            raise ValueError(
                "trusting every peer ('*') lets any client choose its own address; "
                "list the proxies' addresses or networks"
            )
        try:
            entry = ipaddress.ip_network(item) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (such as 127.0.0.1 or 10.0.0.0/8)"
            ) from None
        entries.append(str(entry))
    return tuple(dict.fromkeys(entries))


@lru_cache
def get_settings() -> Settings:
    return Settings()
