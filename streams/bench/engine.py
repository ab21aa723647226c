"""The ``engine`` section: events/s of the embedded engine, a fresh top-k per event, at each
catalogue size (only the event loop timed).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from streams.bench.report import Row, pct, rss_mb
from streams.bench.synthetic import DIM, ItemSampler, synthetic_events, synthetic_videos, unit_rows

# workers.* (torch, qdrant) is imported inside the functions: `vidrec --help` loads this module.


def engine_with_catalogue(n: int, rng: np.random.Generator, chunk: int = 20_000) -> Any:
    """An engine whose index and catalogue hold ``n`` videos with random unit vectors."""
    from workers.encoder import HashingEncoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EngineSettings, IndexSettings

    # The encoder is never called (vectors are given); it makes new items start from content.
    # A throwaway index whatever the environment says: never fill a real store with synthetic
    # videos (VIDREC_QDRANT_BACKEND still picks the backend, to compare them).
    index = VideoIndex(IndexSettings(path=None, url=None), dim=DIM)
    engine = Engine(EngineSettings(), HashingEncoder(DIM), index)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        engine.on_videos(synthetic_videos(start, m, rng), vectors=unit_rows(m, rng))
    return engine


def _learn(engine: Any, events: Sequence[Any]) -> None:
    """The learning half of ``on_event`` (state, no ranking): for warm-ups and long replays."""
    for e in events:
        d = engine.user_step(e)
        if d is not None:
            engine.apply_item_deltas(d)


def bench_engine(
    sizes: Sequence[int], events: int, warmup: int, seconds: float, seed: int = 0
) -> tuple[list[Row], dict[int, float]]:
    """Events/s of ``Engine.on_event`` (a fresh top-k per event) at each catalogue size.

    Per size: the catalogue is loaded (timed separately), ``warmup`` events are learned without
    ranking (so users have histories and items have co-counts), then up to ``events`` events are
    timed through ``on_event``, stopping early after ``seconds``.
    """
    rows, rates = [], {}
    for n in sizes:
        rng = np.random.default_rng(seed + n)
        gc.collect()
        rss0 = rss_mb()
        t = time.perf_counter()
        engine = engine_with_catalogue(n, rng)
        load_s = time.perf_counter() - t
        rss_loaded = rss_mb()
        n_users = max(100, events // 5)
        sampler = ItemSampler(n, rng)
        warm = synthetic_events(sampler.draw(warmup), rng.integers(0, n_users, warmup), rng, 0)
        _learn(engine, warm)
        timed = synthetic_events(
            sampler.draw(events), rng.integers(0, n_users, events), rng, warmup
        )
        lat: list[float] = []
        t = time.perf_counter()
        deadline = t + seconds
        done = 0
        for e in timed:
            recs = engine.on_event(e)
            done += 1
            if recs is not None:
                lat.append(recs.latency_ms)
            if time.perf_counter() > deadline:
                break
        dt = time.perf_counter() - t
        rate = done / dt
        rates[n] = rate
        k = engine.settings.k
        backend = engine.index.backend
        peak = rss_mb()
        engine.index.close()
        del engine, warm, timed
        gc.collect()
        target, met = "", None
        if n == 10_000:
            target, met = ">= 3,000 events/s", rate >= 3000
        elif n == 100_000:
            target, met = ">= 1,000 events/s", rate >= 1000
        rows.append(
            Row(
                "engine",
                f"embedded engine, {n:,} videos, fresh top-{k} per event",
                f"{rate:,.0f} events/s",
                f"{done} events timed{' (time cap)' if done < events else ''} after {warmup} "
                f"learned, {n_users} users, Zipf items, random unit vectors, Qdrant {backend}; "
                f"p50/p99 {pct(lat, 50):.2f}/{pct(lat, 99):.2f} ms; catalogue load "
                f"{n / load_s:,.0f} videos/s (generation included), RSS +"
                f"{rss_loaded - rss0:,.0f} MB for the catalogue (process then {peak:,.0f} MB)",
                target,
                met,
            )
        )
        print(f"  engine {n}: {rows[-1].figure}", file=sys.stderr, flush=True)
    return rows, rates
