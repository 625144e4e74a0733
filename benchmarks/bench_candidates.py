"""Candidate search latency against the real Redis live index.

A city of 10,000 online drivers placed like the real April 2014 NYC demand; pickups
drawn from the evening peak. Each search is `dispatch.candidates.search` exactly as the
dispatcher and the quote endpoint call it (H3 rings, Lua script, ETA ranking), one at a
time so the latency is a single search's. The baseline, measured in the same run on the
same drivers: Redis's own GEOSEARCH (radius, nearest 8), the fastest thing Redis offers
for "who is near", without our availability and freshness rules.

    .venv/bin/python benchmarks/bench_candidates.py [--drivers 10000] [--searches 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from benchmarks.citygen import load_pickups, make_city
from benchmarks.harness import percentile
from core.clock import now_ms
from core.settings import get_settings
from dispatch import candidates
from dispatch.runtime import Runtime
from geo import cells
from geo.point import LatLng

WANT = 8


async def main_async(drivers: int, searches: int) -> None:
    base = get_settings()
    settings = base.model_copy(update={"redis_prefix": f"coopbench:cand:{secrets.token_hex(3)}:"})
    rt = Runtime.create(settings)
    await rt.start()
    geo_key = f"{settings.redis_prefix}geo"
    try:
        city = make_city(load_pickups(), requests=searches, drivers=drivers, seed=20140430)
        t = now_ms()
        print(f"indexing {drivers} drivers ...", flush=True)
        started = time.perf_counter()
        await asyncio.gather(
            *(rt.presence.set_status(d, "available", now_ms=t) for d in city.driver_ids)
        )
        await asyncio.gather(
            *(
                rt.presence.update_location(
                    d,
                    lat=float(lat),
                    lng=float(lng),
                    ts_ms=t,
                    accuracy_m=None,
                    heading=None,
                    speed_mps=None,
                    cell=cells.cell_of(LatLng(float(lat), float(lng)), rt.presence.resolution),
                    now_ms=t,
                )
                for d, lat, lng in zip(
                    city.driver_ids, city.driver_lat, city.driver_lng, strict=True
                )
            )
        )
        print(f"  indexed in {time.perf_counter() - started:.1f} s", flush=True)
        async with rt.redis.pipeline(transaction=False) as pipe:
            for d, lat, lng in zip(city.driver_ids, city.driver_lat, city.driver_lng, strict=True):
                pipe.geoadd(geo_key, (float(lng), float(lat), d))
            await pipe.execute()
        radius_m = rt.eta.reach_m(rt.settings.max_pickup_eta_s)
        pickups = [
            LatLng(float(a), float(b))
            for a, b in zip(city.request_lat, city.request_lng, strict=True)
        ]
        min_seen = t - 60_000

        ours: list[float] = []
        found: list[int] = []
        for p in pickups:
            s = time.perf_counter()
            result = await candidates.search(
                rt.presence,
                rt.eta,
                p,
                want=WANT,
                max_pickup_eta_s=rt.settings.max_pickup_eta_s,
                min_seen_ms=min_seen,
            )
            ours.append(time.perf_counter() - s)
            found.append(len(result))
        geo: list[float] = []
        for p in pickups:
            s = time.perf_counter()
            await rt.redis.geosearch(
                geo_key,
                longitude=p.lng,
                latitude=p.lat,
                radius=radius_m,
                unit="m",
                sort="ASC",
                count=WANT,
            )
            geo.append(time.perf_counter() - s)
    finally:
        keys = [k async for k in rt.redis.scan_iter(match=f"{settings.redis_prefix}*", count=1000)]
        for i in range(0, len(keys), 500):
            await rt.redis.delete(*keys[i : i + 500])
        await rt.close()

    ours.sort()
    geo.sort()
    print(
        f"\nCandidate search, {drivers} online drivers spread like NYC demand, "
        f"{searches} pickups from the evening peak, one search at a time"
    )
    print(f"{'':<34}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}")
    for name, xs in (("candidates.search (H3 rings+Lua)", ours), ("GEOSEARCH baseline", geo)):
        print(
            f"{name:<34}{percentile(xs, 0.5) * 1e3:>8.3f}{percentile(xs, 0.9) * 1e3:>8.3f}"
            f"{percentile(xs, 0.99) * 1e3:>8.3f}{xs[-1] * 1e3:>8.3f}"
        )
    print(f"ratio p99 ours / GEOSEARCH: {percentile(ours, 0.99) / percentile(geo, 0.99):.2f}")
    arr = np.array(found)
    print(
        f"candidates per search: mean {arr.mean():.1f}, p10 {np.percentile(arr, 10):.0f}, "
        f"none found {int((arr == 0).sum())}"
    )
    print(f"target p99 < 2 ms: {'met' if percentile(ours, 0.99) < 0.002 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--drivers", type=int, default=10_000)
    parser.add_argument("--searches", type=int, default=5_000)
    args = parser.parse_args()
    asyncio.run(main_async(args.drivers, args.searches))


if __name__ == "__main__":
    main()
