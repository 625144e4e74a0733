"""Prometheus metrics, defined once and incremented where things happen."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "coop_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "coop_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
SOCKETS_CONNECTED = Gauge("coop_sockets_connected", "Open sockets", ["audience"], registry=REGISTRY)
SOCKET_FRAMES = Counter(
    "coop_socket_frames_total",
    "Frames received on sockets",
    ["audience", "type"],
    registry=REGISTRY,
)
SOCKET_ERRORS = Counter(
    "coop_socket_errors_total", "Error frames sent", ["audience", "code"], registry=REGISTRY
)
LOCATION_FRAMES = Counter(
    "coop_location_frames_total",
    "Driver location frames taken into the index",
    registry=REGISTRY,
)
DISPATCH_BATCH_SIZE = Histogram(
    "coop_dispatch_batch_requests",
    "Requests considered per dispatch batch",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
    registry=REGISTRY,
)
DISPATCH_SOLVE_SECONDS = Histogram(
    "coop_dispatch_solve_seconds",
    "Time to match one batch",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
OFFERS = Counter("coop_offers_total", "Offers by outcome", ["outcome"], registry=REGISTRY)
TRIPS = Counter("coop_trips_total", "Trip status changes", ["status"], registry=REGISTRY)
SOCKET_CONNECTIONS = Counter(
    "coop_socket_connections_total",
    "Sockets opened (authenticated) by audience",
    ["audience"],
    registry=REGISTRY,
)
SOCKET_FRAME_SECONDS = Histogram(
    "coop_socket_frame_seconds",
    "Time to handle one frame received on a socket",
    ["audience", "type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
    registry=REGISTRY,
)
SOCKET_FRAMES_SENT = Counter(
    "coop_socket_events_sent_total", "Events pushed to sockets", ["audience"], registry=REGISTRY
)
OPS_SNAPSHOT_SECONDS = Histogram(
    "coop_ops_snapshot_seconds",
    "Time to build one operator dashboard snapshot (one per process per interval)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
