"""What a SIGKILL of the api process costs drivers: how long until the drivers whose
sockets it held count as disconnected, and how long until they are back online after a
restart.

Real processes: ``coopride serve --no-dispatcher`` (the api) and ``coopride dispatcher``,
with the default settings (``COOP_PROCESS_LEASE_S`` 6 s, ``COOP_DISPATCH_BATCH_S`` 2 s)
unless given. ``--drivers`` phones (30) connect, go online and send a position every
second, as the apps do. Then, twice over:

1. **Killed, not restarted.** The api is SIGKILLed; Redis is read every 50 ms until each
   driver counts as disconnected (no socket counted by a live process, and offline): the
   time from the kill. The api is then started again; the phones come back.
2. **Killed and restarted at once** (a supervisor's restart, ``--rounds`` times): the
   time from the kill until each phone has a new socket and its ``status: online`` is
   acknowledged. A phone whose socket dropped tries again at once, then every 0.5 s
   (with up to 0.1 s of jitter). After each round, how long until Redis counts each
   driver with exactly its one open socket again (the dead process's counts reaped).

    .venv/bin/python benchmarks/bench_api_crash.py [--drivers 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from redis import Redis
from websockets.asyncio.client import ClientConnection, connect

from benchmarks.harness import bench_settings, create_members, drop_database, fresh_database
from core.settings import Settings
from server import harness

RETRY_S = 0.5
JITTER_S = 0.1
LOCATION_EVERY_S = 1.0
POLL_S = 0.05


class Phone:
    """A driver's app: keeps a socket open, online, reporting; reconnects when it drops."""

    def __init__(self, ws_url: str, token: str, seed: int) -> None:
        self.url = f"{ws_url}/v1/drivers/ws"
        self.token = token
        self.rng = random.Random(seed)
        self.lat = 40.75 + self.rng.random() * 0.02
        self.lng = -73.99 + self.rng.random() * 0.02
        self.online_at: float | None = None  # monotonic time status online was acked
        self.connects = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with connect(
                    self.url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    open_timeout=5,
                ) as ws:
                    self.connects += 1
                    await self._call(ws, {"type": "status", "status": "online"})
                    self.online_at = time.monotonic()
                    while not stop.is_set():
                        await asyncio.sleep(LOCATION_EVERY_S)
                        self.lat += (self.rng.random() - 0.5) * 1e-4
                        await self._call(
                            ws,
                            {"type": "location", "lat": self.lat, "lng": self.lng, "accuracy_m": 5},
                        )
            except Exception:
                pass  # dropped, or refused: the app tries again
            if not stop.is_set():
                await asyncio.sleep(RETRY_S if self.connects else 0.0)
                await asyncio.sleep(self.rng.random() * JITTER_S)

    async def _call(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        await ws.send(orjson.dumps({**frame, "id": 1}).decode())
        while True:
            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if reply.get("ref") == 1:
                if reply["type"] != "ok":
                    raise RuntimeError(reply)
                return


class Stage:
    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.port = harness.free_port()
        self.starts = 0
        self.api: harness.Server | None = None
        self.redis = Redis.from_url(settings.redis_url, decode_responses=True)
        self.prefix = settings.redis_prefix

    def start_api(self) -> float:
        """Starts the api and returns how long it took to answer /readyz."""
        self.starts += 1
        began = time.monotonic()
        self.api = harness.start_server(
            self.settings,
            self.logs / f"api-{self.starts}.log",
            dispatcher=False,
            port=self.port,
            ready_timeout_s=60,
        )
        return time.monotonic() - began

    def kill_api(self) -> float:
        assert self.api is not None
        popen = self.api.process.popen
        popen.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        popen.wait(10)
        self.api = None
        return killed

    def disconnected(self, driver_ids: list[str]) -> set[str]:
        """Drivers that count as disconnected: no socket counted by a process whose lease
        lasts, and offline."""
        procs = {p: s for p, s in self.redis.zrange(f"{self.prefix}procs", 0, -1, withscores=True)}
        seconds, micros = self.redis.time()
        now = seconds * 1000 + micros // 1000
        gone = set()
        for d in driver_ids:
            counts = self.redis.hgetall(f"{self.prefix}conns:{d}")
            live = sum(int(n) for p, n in counts.items() if procs.get(p, 0) > now)
            status = self.redis.hget(f"{self.prefix}drv:{d}", "status")
            if live == 0 and status == "offline":
                gone.add(d)
        return gone

    def counted(self, driver_ids: list[str]) -> dict[str, int]:
        """Driver -> sockets counted by every process, live or dead."""
        return {
            d: sum(int(n) for n in self.redis.hvals(f"{self.prefix}conns:{d}")) for d in driver_ids
        }


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered):.2f} s, p90 {p90:.2f} s, "
        f"min {ordered[0]:.2f} s, max {ordered[-1]:.2f} s (n={len(ordered)})"
    )


async def _wait(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(POLL_S)
    return False


async def _all_online(phones: list[Phone], since: float, timeout_s: float) -> bool:
    return await _wait(
        lambda: all(p.online_at is not None and p.online_at > since for p in phones), timeout_s
    )


async def bench(stage: Stage, members: list[tuple[str, str]], rounds: int) -> dict[str, Any]:
    ids = [m[0] for m in members]
    assert stage.api is not None
    phones = [Phone(stage.api.ws_url, token, n) for n, (_, token) in enumerate(members)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop)) for p in phones]
    result: dict[str, Any] = {"disconnected_s": [], "reconnect_s": [], "restart_s": []}
    result["settled_s"] = []
    result["max_over"] = 0
    try:
        assert await _all_online(phones, 0.0, 30), "phones not online"
        await asyncio.sleep(2 * LOCATION_EVERY_S)
        for _ in range(2):
            # 1. Killed, not restarted: until each driver counts as disconnected.
            killed = stage.kill_api()
            seen: dict[str, float] = {}
            deadline = killed + 3 * stage.settings.process_lease_s + 10
            while len(seen) < len(ids) and time.monotonic() < deadline:
                for d in stage.disconnected(ids):
                    seen.setdefault(d, time.monotonic() - killed)
                await asyncio.sleep(POLL_S)
            assert len(seen) == len(ids), f"{len(ids) - len(seen)} drivers never disconnected"
            result["disconnected_s"] += list(seen.values())
            back = time.monotonic()
            stage.start_api()
            assert await _all_online(phones, back, 60), "phones not back"
            await asyncio.sleep(2 * LOCATION_EVERY_S)
        for _ in range(rounds):
            # 2. Killed and restarted at once: until each phone is back online.
            killed = stage.kill_api()
            result["restart_s"].append(stage.start_api())
            assert await _all_online(phones, killed, 60), "phones not back"
            result["reconnect_s"] += [p.online_at - killed for p in phones if p.online_at]
            # Until every driver is counted with its one socket again.
            settled = await _wait(lambda: set(stage.counted(ids).values()) == {1}, 60)
            assert settled, stage.counted(ids)
            result["settled_s"].append(time.monotonic() - killed)
            await asyncio.sleep(2 * LOCATION_EVERY_S)
            result["max_over"] = max(result["max_over"], max(stage.counted(ids).values()) - 1)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drivers", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lease-s", type=float, default=None, help="COOP_PROCESS_LEASE_S")
    args = parser.parse_args()
    overrides: dict[str, Any] = {}
    if args.lease_s is not None:
        overrides["process_lease_s"] = args.lease_s
    settings = bench_settings("api_crash", **overrides)
    fresh_database(settings)
    logs = Path(tempfile.mkdtemp(prefix="coopride-bench-api-crash-"))
    stage = Stage(settings, logs)
    dispatcher = harness.start_dispatcher(settings, logs / "dispatcher.log", log_level="info")
    try:
        members = create_members(settings, args.drivers)
        restart_first = stage.start_api()
        result = asyncio.run(bench(stage, members, args.rounds))
    finally:
        if stage.api is not None:
            stage.api.stop()
        dispatcher.stop()
        drop_database(settings)
    print(
        f"api SIGKILL, {args.drivers} drivers, lease {settings.process_lease_s:g} s, "
        f"dispatcher tick {settings.dispatch_batch_s:g} s (logs in {logs}):"
    )
    print(f"  counted as disconnected after the kill: {_summary(result['disconnected_s'])}")
    print(f"  api start to /readyz: {_summary([restart_first, *result['restart_s']])}")
    print(f"  driver back online after kill + restart: {_summary(result['reconnect_s'])}")
    print(f"  every driver counted with its one socket again: {_summary(result['settled_s'])}")
    print(f"  most sockets counted above those open, after settling: {result['max_over']}")


if __name__ == "__main__":
    main()
