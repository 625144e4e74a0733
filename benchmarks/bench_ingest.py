"""Location ingest through the real driver socket into real Redis.

For 1,000 and 5,000 connected drivers, each sending a `location` frame every 4 s
("paced") and as fast as the acks come back ("flat out"), this measures updates taken
into the live index per second by ONE api process, and the p50/p99 time from sending a
frame to its `ok` (the frame has then been validated and written to Redis).

The ceiling is the same server stack with a no-op socket (`/v1/bench/noop-ws`: take a
frame, parse it, ack it), driven by the same clients in the same run; the driver
socket's throughput is reported as a share of it.

    .venv/bin/python benchmarks/bench_ingest.py [--drivers 1000 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from redis import Redis
from websockets.asyncio.client import connect

from benchmarks.harness import (
    bench_settings,
    create_members,
    drop_database,
    fresh_database,
    percentile,
    running_server,
)

UPDATE_INTERVAL_S = 4.0
WARMUP_S = 2.0


def _worker(args: tuple[str, list[str], str, float, int, Any]) -> dict[str, Any]:
    return asyncio.run(_drive(*args))


async def _drive(
    url: str, tokens: list[str], mode: str, seconds: float, seed: int, barrier: Any
) -> dict[str, Any]:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors = 0
    acks = 0
    connect_gate = asyncio.Semaphore(100)
    settled = 0  # sockets set up, or failed to
    all_connected = asyncio.Event()
    start: list[float] = []
    started = asyncio.Event()

    def settle() -> None:
        # The run starts once every socket is up or has failed: a socket that cannot
        # connect is reported as an error instead of holding the others forever.
        nonlocal settled
        settled += 1
        if settled == len(tokens):
            all_connected.set()

    async def one(token: str) -> None:
        nonlocal acks, errors
        try:
            async with connect_gate:
                ws = await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    compression=None,
                    open_timeout=60,
                    ping_interval=None,
                    max_queue=None,
                )
        except BaseException:
            settle()
            raise
        lat = 40.70 + rng.random() * 0.12
        lng = -74.02 + rng.random() * 0.09
        try:
            try:
                # Ready once the server has finished setting the socket up and answered.
                await ws.send('{"type":"status","status":"online","id":0}')
                await asyncio.wait_for(ws.recv(), 60)
            finally:
                settle()
            await all_connected.wait()
            await started.wait()
            t_start = start[0]
            t_measure, t_end = t_start + WARMUP_S, t_start + WARMUP_S + seconds
            next_at = t_start + rng.random() * UPDATE_INTERVAL_S
            n = 0
            while True:
                if mode == "paced":
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    next_at += UPDATE_INTERVAL_S
                now = time.perf_counter()
                if now >= t_end:
                    break
                n += 1
                lat += (rng.random() - 0.5) * 1e-4
                lng += (rng.random() - 0.5) * 1e-4
                frame = (
                    f'{{"type":"location","lat":{lat:.6f},"lng":{lng:.6f},"accuracy_m":8,"id":{n}}}'
                )
                sent = time.perf_counter()
                await ws.send(frame)
                reply = orjson.loads(await ws.recv())
                done = time.perf_counter()
                if reply.get("type") != "ok":
                    errors += 1
                elif sent >= t_measure and done <= t_end:
                    acks += 1
                    latencies.append(done - sent)
        finally:
            await ws.close()

    tasks = [asyncio.create_task(one(t)) for t in tokens]
    await all_connected.wait()
    await asyncio.to_thread(barrier.wait)
    start.append(time.perf_counter())
    started.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    return {
        "acks": acks,
        "errors": errors + len(failures),
        "latencies": latencies,
        "failures": [repr(f) for f in failures[:3]],
    }


def run_clients(
    url: str,
    tokens: list[str],
    mode: str,
    seconds: float,
    processes: int,
    cpu_seconds: Callable[[], float],
) -> dict[str, Any]:
    """Drive the sockets from ``processes`` client processes; the parent joins their
    start barrier and reads the server's CPU time over exactly the measured window."""
    ctx = mp.get_context("fork")
    barrier = ctx.Manager().Barrier(processes + 1)
    slices = [tokens[i::processes] for i in range(processes)]
    with ctx.Pool(processes) as pool:
        pending = pool.map_async(
            _worker, [(url, s, mode, seconds, 7 + i, barrier) for i, s in enumerate(slices)]
        )
        barrier.wait()
        time.sleep(WARMUP_S)
        cpu_before = cpu_seconds()
        time.sleep(seconds)
        cpu_used = cpu_seconds() - cpu_before
        parts = pending.get()
    latencies = sorted(x for p in parts for x in p["latencies"])
    acks = sum(p["acks"] for p in parts)
    return {
        "updates_per_s": acks / seconds,
        "server_cpu": cpu_used / seconds,
        "per_cpu_s": acks / cpu_used if cpu_used else float("nan"),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": sum(p["errors"] for p in parts),
        "failures": [f for p in parts for f in p["failures"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drivers", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["paced", "flat"])
    parser.add_argument("--endpoints", nargs="+", default=["noop", "driver"])
    args = parser.parse_args()

    # "Flat out" sends as fast as acks come back, far above the per-driver location rate
    # limit a phone lives under; the limit is still checked on every frame (inside the
    # location script), only set so high that no frame is dropped.
    settings = bench_settings(
        "ingest", driver_stale_s=600, location_rate_per_s=1e6, location_burst=10**9
    )
    print(f"preparing database and {max(args.drivers)} members ...", flush=True)
    fresh_database(settings)
    members = create_members(settings, max(args.drivers))
    tokens = [t for _, t in members]
    rows = []
    try:
        with running_server(settings) as base:
            ws_base = base.replace("http://", "ws://")
            for n in args.drivers:
                for mode in args.modes:
                    for name, path in (("noop", "/v1/bench/noop-ws"), ("driver", "/v1/drivers/ws")):
                        if name not in args.endpoints:
                            continue
                        r = run_clients(
                            ws_base + path,
                            tokens[:n],
                            mode,
                            args.seconds,
                            args.client_processes,
                            base.cpu_seconds,
                        )
                        rows.append((n, mode, name, r))
                        print(
                            f"  {n:>5} drivers {mode:<5} {name:<6} "
                            f"{r['updates_per_s']:>9.0f}/s  p50 {r['p50_ms']:7.2f} ms  "
                            f"p99 {r['p99_ms']:8.2f} ms  server CPU {r['server_cpu']:4.0%}  "
                            f"{r['per_cpu_s']:>7.0f}/CPU-s  errors {r['errors']}"
                            + (f"  {r['failures']}" if r["failures"] else ""),
                            flush=True,
                        )
            redis = Redis.from_url(settings.redis_url, decode_responses=True)
            indexed = redis.zcard(f"{settings.redis_prefix}seen")
            keys = list(redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000))
            for i in range(0, len(keys), 500):
                redis.delete(*keys[i : i + 500])
    finally:
        drop_database(settings)

    print("\nLocation ingest, one api process (uvicorn websockets-sansio), this machine")
    print("(per CPU-s: frames taken per second of the server process's own CPU time,")
    print(" i.e. what one process does with a whole core to itself)")
    print(
        f"{'drivers':>7} {'mode':<5} {'driver/s':>9} {'noop/s':>8} {'share':>6} "
        f"{'drv/CPU-s':>9} {'noop/CPU-s':>10} {'share':>6} {'p50 ms':>7} {'p99 ms':>8}"
    )
    for n in args.drivers:
        for mode in args.modes:
            if set(args.endpoints) != {"noop", "driver"}:
                break
            noop = next(r for (m, md, nm, r) in rows if m == n and md == mode and nm == "noop")
            drv = next(r for (m, md, nm, r) in rows if m == n and md == mode and nm == "driver")
            share = drv["updates_per_s"] / noop["updates_per_s"] if noop["updates_per_s"] else 0
            cpu_share = drv["per_cpu_s"] / noop["per_cpu_s"] if noop["per_cpu_s"] else 0
            print(
                f"{n:>7} {mode:<5} {drv['updates_per_s']:>9.0f} {noop['updates_per_s']:>8.0f} "
                f"{share:>6.0%} {drv['per_cpu_s']:>9.0f} {noop['per_cpu_s']:>10.0f} "
                f"{cpu_share:>6.0%} {drv['p50_ms']:>7.2f} {drv['p99_ms']:>8.2f}"
            )
    print(f"drivers in the live index after the run: {indexed}")


if __name__ == "__main__":
    main()
