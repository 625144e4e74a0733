"""A phone's side of the load test, under gevent: its socket (a greenlet reads frames
into a queue) and the request events that put socket timings in Locust's statistics.
Runs only inside the Locust subprocess (``loadtests/locustfile.py``), like everything
that imports gevent or Locust."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time
from typing import Any

import gevent
import websocket
from gevent.queue import Empty, Queue
from locust.env import Environment

from geo.point import LatLng

# A socket that cannot be opened within this long counts as a failed connect.
CONNECT_TIMEOUT_S = 20.0


def fire(
    environment: Environment,
    name: str,
    elapsed_s: float,
    *,
    exception: BaseException | None = None,
    length: int = 0,
) -> None:
    environment.events.request.fire(
        request_type="WS",
        name=name,
        response_time=elapsed_s * 1000.0,
        response_length=length,
        exception=exception,
        context={},
    )


class FrameError(Exception):
    """An ``error`` frame the scenario did not expect."""


class Socket:
    """A phone's socket: a greenlet reads frames into a queue; sends go straight out."""

    def __init__(self, environment: Environment, url: str, token: str, name: str) -> None:
        t0 = time.monotonic()
        try:
            self.ws = websocket.create_connection(
                url, header=[f"Authorization: Bearer {token}"], timeout=CONNECT_TIMEOUT_S
            )
        except Exception as exc:
            fire(environment, name, time.monotonic() - t0, exception=exc)
            raise
        fire(environment, name, time.monotonic() - t0)
        self.ws.settimeout(None)
        self.frames: Queue[dict[str, Any]] = Queue()
        self.closed = False
        self.ids = itertools.count(1)
        self.reader = gevent.spawn(self._read)

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                if not raw:
                    break
                self.frames.put(json.loads(raw))
        except Exception:  # the socket closed: the user sees it as a closed queue
            pass
        finally:
            self.closed = True
            self.frames.put({"type": "_closed"})

    def send(self, frame: dict[str, Any]) -> None:
        self.ws.send(json.dumps(frame))

    def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            frame: dict[str, Any] = self.frames.get(timeout=max(0.0, timeout))
            return frame
        except Empty:
            return None

    def close(self) -> None:
        self.reader.kill(block=False)
        with contextlib.suppress(Exception):
            self.ws.close()


def ws_url(host: str | None) -> str:
    assert host, "Locust was started without --host"
    return host.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


def point(p: LatLng) -> dict[str, float]:
    return {"lat": round(float(p.lat), 6), "lng": round(float(p.lng), 6)}


def phone(rng: random.Random) -> str:
    return f"+1 555 {rng.randrange(10**7):07d}"
