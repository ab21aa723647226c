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


def engine_with_catalogue(
    n: int, rng: np.random.Generator, chunk: int = 20_000, **settings: Any
) -> Any:
    """An engine whose index and catalogue hold ``n`` videos with random unit vectors."""
    from workers.encoder import HashingEncoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EngineSettings, IndexSettings

    # The encoder is never called (vectors are given); it makes new items start from content.
    # A throwaway index whatever the environment says: never fill a real store with synthetic
    # videos (VIDREC_QDRANT_BACKEND still picks the backend, to compare them).
    index = VideoIndex(IndexSettings(path=None, url=None), dim=DIM)
    engine = Engine(EngineSettings(**settings), HashingEncoder(DIM), index)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        engine.on_videos(synthetic_videos(start, m, rng), vectors=unit_rows(m, rng))
    return engine


def _learn(engine: Any, events: Sequence[Any]) -> None:
    """The learning half of ``on_event`` (state, no ranking): for warm-ups and long replays;
    the sequential model, when on, trains at its pace as in ``on_event``."""
    for e in events:
        d = engine.user_step(e)
        if d is not None:
            engine.apply_item_deltas(d)
            engine.train_if_due()


def _count_ranked(engine: Any) -> list[int]:
    """Count the engine's ``publish_many`` calls (how many users a batch ranks together)."""
    calls = [0]
    publish_many = engine.publish_many

    def counted(*args: Any) -> Any:
        calls[0] += 1
        return publish_many(*args)

    engine.publish_many = counted
    return calls


def _timed_run(
    n: int, events: int, warmup: int, seconds: float, seed: int, batch: int = 1, **settings: Any
) -> dict[str, Any]:
    """Load ``n`` videos, learn ``warmup`` events, time up to ``events`` through ``on_event``.

    ``batch`` > 1: alternate chunks of ``batch`` events go through ``on_events`` as one
    micro-batch (as a loaded worker takes them; ``rate``, ``done`` and the latencies, which
    then count from the start of the batch) and one at a time (``one_rate``), side by side.

    With the sequential model on, it trains during the warm-up as the in-process run does, and
    not while timed: a worker trains it beside the event path, so the timed figure is the
    event path alone, and the training cost is reported apart.
    """
    rng = np.random.default_rng(seed + n)
    gc.collect()
    rss0 = rss_mb()
    t = time.perf_counter()
    engine = engine_with_catalogue(n, rng, **settings)
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()
    n_users = max(100, events // 5)
    sampler = ItemSampler(n, rng)
    warm = synthetic_events(sampler.draw(warmup), rng.integers(0, n_users, warmup), rng, 0)
    _learn(engine, warm)
    seq = getattr(engine, "seq", None)
    every = engine.settings.seq_train_every
    train = (seq.train_s / seq.steps * 1000, seq.steps, every) if seq and seq.steps else None
    if seq is not None:
        engine.settings = engine.settings.model_copy(update={"seq_train_every": 0})
    timed = synthetic_events(sampler.draw(events), rng.integers(0, n_users, events), rng, warmup)
    lat: list[float] = []
    ranked = _count_ranked(engine)
    # batch > 1: alternate chunks of ``batch`` events go one at a time (A) and as one
    # micro-batch (B) through the same engine, so the two rates share the machine's load
    spent, count = [0.0, 0.0], [0, 0]
    start = time.perf_counter()
    deadline = start + seconds
    for j, i in enumerate(range(0, len(timed), batch)):
        chunk = timed[i : i + batch]
        mode = j % 2 if batch > 1 else 0
        t = time.perf_counter()
        if mode:
            got = engine.on_events(chunk)
        else:
            got = [engine.on_event(e) for e in chunk]
        spent[mode] += time.perf_counter() - t
        count[mode] += len(chunk)
        if mode or batch == 1:
            lat += [r.latency_ms for r in got if r is not None]
        if time.perf_counter() > deadline:
            break
    m = int(batch > 1)
    out = {
        "rate": count[m] / spent[m] if spent[m] else 0.0,
        "one_rate": count[0] / spent[0] if spent[0] else 0.0,
        "done": count[m],
        "capped": sum(count) < len(timed),
        "users": n_users,
        "k": engine.settings.k,
        "backend": engine.index.backend,
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "load_rate": n / load_s,
        "rss_catalogue": rss_loaded - rss0,
        "peak": rss_mb(),
        "train": train,
        "ranked_together": len(lat) / ranked[0] if ranked[0] else 1.0,
    }
    engine.index.close()
    del engine, warm, timed
    gc.collect()
    return out


def bench_engine(
    sizes: Sequence[int],
    events: int,
    warmup: int,
    seconds: float,
    seed: int = 0,
    sequential: bool = True,
    batch: int = 32,
) -> tuple[list[Row], dict[int, float]]:
    """Events/s of ``Engine.on_event`` (a fresh top-k per event) at each catalogue size.

    With ``batch`` > 1, each size runs again on the same catalogue and events, alternate
    chunks of ``batch`` events going through ``Engine.on_events`` as micro-batches (what a
    worker's adaptive batch reaches under load; one event when idle) and one at a time, so
    the two rates compare side by side under the same load.

    Per size: the catalogue is loaded (timed separately), ``warmup`` events are learned without
    ranking (so users have histories and items have co-counts), then up to ``events`` events are
    timed through ``on_event``, stopping early after ``seconds``. With ``sequential``, the
    10,000-video size runs again with the sequential model on (issue 17: its p99 may grow by
    2 ms at most), on the same catalogue and events.
    """
    rows, rates = [], {}
    for n in sizes:
        r = _timed_run(n, events, warmup, seconds, seed)
        rates[n] = r["rate"]
        target, met = "", None
        if n == 10_000:
            target, met = ">= 3,000 events/s", r["rate"] >= 3000
        elif n == 100_000:
            target, met = ">= 1,000 events/s", r["rate"] >= 1000
        rows.append(
            Row(
                "engine",
                f"embedded engine, {n:,} videos, fresh top-{r['k']} per event",
                f"{r['rate']:,.0f} events/s",
                f"{r['done']} events timed{' (time cap)' if r['done'] < events else ''} after "
                f"{warmup} learned, {r['users']} users, Zipf items, random unit vectors, Qdrant "
                f"{r['backend']}; p50/p99 {r['p50']:.2f}/{r['p99']:.2f} ms; catalogue load "
                f"{r['load_rate']:,.0f} videos/s (generation included), RSS "
                f"+{r['rss_catalogue']:,.0f} MB for the catalogue "
                f"(process then {r['peak']:,.0f} MB)",
                target,
                met,
            )
        )
        print(f"  engine {n}: {rows[-1].figure}", file=sys.stderr, flush=True)
        if batch > 1:
            b = _timed_run(n, events, warmup, seconds, seed, batch=batch)
            rows.append(
                Row(
                    "engine",
                    f"embedded engine, {n:,} videos, fresh top-{b['k']} per event, "
                    f"micro-batches of {batch}",
                    f"{b['rate']:,.0f} events/s",
                    f"x{b['rate'] / b['one_rate']:.2f} one at a time ({b['one_rate']:,.0f} "
                    f"events/s) on alternate chunks of the same run; {b['done']} events timed "
                    f"{'(time cap) ' if b['capped'] else ''}in micro-batches, "
                    f"{b['ranked_together']:.1f} users ranked together on average (a batch "
                    f"splits before a user's second event); p50/p99 {b['p50']:.2f}/"
                    f"{b['p99']:.2f} ms from the start of the event's batch",
                    target,
                    met if met is None else b["rate"] >= (3000 if n == 10_000 else 1000),
                )
            )
            print(f"  engine {n} batched: {rows[-1].figure}", file=sys.stderr, flush=True)
        if sequential and n == 10_000:
            s = _timed_run(n, events, warmup, seconds, seed, seq_enabled=True)
            grow = s["p99"] - r["p99"]
            train = s["train"]
            cost = (
                f"training {train[0]:.0f} ms a step ({train[1]} steps in the warm-up, one every "
                f"{train[2]} events, beside the event path in a worker)"
                if train
                else "no training step in the warm-up"
            )
            rows.append(
                Row(
                    "engine",
                    "the same with the sequential model: p99 growth of the event path",
                    f"{grow:+.2f} ms",
                    f"{s['rate']:,.0f} events/s; p50/p99 {s['p50']:.2f}/{s['p99']:.2f} ms against "
                    f"{r['p50']:.2f}/{r['p99']:.2f} ms without, same catalogue and events; {cost}",
                    "<= +2 ms",
                    grow <= 2.0,
                )
            )
            print(f"  engine {n} + sequential: {rows[-1].figure}", file=sys.stderr, flush=True)
    return rows, rates
