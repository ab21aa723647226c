"""The ``memory`` section: bytes of state per user and per video, and RSS over a long replay.

It runs in a child process (``python -m streams.bench.memory KWARGS OUT``), so its RSS starts
clean of the other sections'.
"""

from __future__ import annotations

import gc
import json
import pickle
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streams.bench.engine import engine_with_catalogue
from streams.bench.report import Row, rss_mb
from streams.bench.synthetic import DAY, T_START, ItemSampler, synthetic_events

# workers.* (torch, qdrant) is imported inside the functions: `vidrec --help` loads this module.


def traced_bytes(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes ``build()`` leaves allocated (tracemalloc: Python objects and numpy buffers)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        obj = build()
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    return used, obj


def _capped_user(settings: Any) -> Any:
    """A user whose every capped collection is full (video indices as a 10k catalogue's)."""
    from array import array

    from workers.users import Ledger, UserState, events_kept

    n = events_kept(settings)
    return (
        UserState(
            ledger=Ledger(
                (i % 10_000 for i in range(n)),
                (T_START + i for i in range(n)),
                (1.0 for _ in range(n)),
            ),
            dedup=array(
                "Q", np.random.default_rng(0).integers(2**62, 2**63, settings.dedup_len).tolist()
            ),
            last_recs=array("i", range(settings.k)),
            seen=np.arange(min(n, 10_000, settings.seen_max), dtype=np.int32),
            last_ts=T_START,
            events=settings.dedup_len,
        ),
        np.zeros(settings.factors_dim, dtype=np.float32),
    )


def state_bytes(engine: Any) -> dict[str, float]:
    """Per-user and per-video state, measured by rebuilding it from a snapshot under tracemalloc.

    The snapshot is pickled outside the trace and unpickled inside it, so the figure is what the
    live structures (objects, dict tables, strings shared as in the engine) hold.
    """
    from schemas.wire import encode_user_value
    from workers.catalog import Catalog
    from workers.cooc import CoOccurrence
    from workers.factors import Factors
    from workers.popularity import Popularity
    from workers.users import UserState

    users = list(engine.users)
    blob = pickle.dumps(
        (
            {u: s.to_state(engine.catalog.ids) for u, s in engine.users.items()},
            dict(engine.factors.users),
        )
    )

    def rebuild_users() -> Any:
        states, vecs = pickle.loads(blob)
        return {u: UserState.from_state(s, engine.item_index) for u, s in states.items()}, vecs

    user_b, _ = traced_bytes(rebuild_users)
    capped_b, _ = traced_bytes(lambda: _capped_user(engine.settings))
    heavy = [u for u in users if engine.users[u].events >= engine.settings.dedup_len]
    # the users-table value a worker writes (msgpack, wire v2), with an empty outbox
    json_b = [len(encode_user_value(engine.snapshot_user(u), [])) for u in users]

    cat = engine.catalog
    vec_bytes = cat.vectors.nbytes  # with the growth head-room, as the live engine allocates it
    parts = {
        "catalogue": (Catalog.from_state, cat.to_state()),
        "co-occurrence": (CoOccurrence.from_state, engine.cooc.to_state()),
        "popularity": (Popularity.from_state, engine.popularity.to_state()),
        "item factors": (Factors.from_state, {**engine.factors.to_state(), "users": {}}),
    }
    video_b: dict[str, float] = {}
    n_videos = len(cat)
    for name, (cls_from, state) in parts.items():
        blob = pickle.dumps(state)
        b, _ = traced_bytes(lambda blob=blob, f=cls_from: f(pickle.loads(blob)))
        if name == "catalogue":
            b -= vec_bytes
        video_b[name] = b / n_videos
    return {
        "users": len(users),
        "per_user": user_b / max(1, len(users)),
        "json_per_user": float(np.mean(json_b)) if json_b else 0.0,
        "heavy_users": len(heavy),
        "capped_user": capped_b,
        "per_video": sum(video_b.values()),
        "videos": n_videos,
        **{f"video:{k}": v for k, v in video_b.items()},
    }


def bench_memory(
    n_events: int,
    n_videos: int,
    n_users: int,
    active: int,
    days: float,
    rank_every: int,
    samples: int = 20,
    seed: int = 0,
) -> tuple[list[Row], list[tuple[int, float]]]:
    """RSS over a long replay with churning users, and the state per user and per video after it.

    Users arrive at a steady rate (``n_users`` in all, about ``active`` at a time), pick Zipf
    items from a fixed catalogue, and go idle; the stream spans ``days``. Each event is learned;
    every ``rank_every``-th also gets its fresh list (``on_event``), which is what keeps a run of
    a million events within minutes: ranking allocates no state beyond the list it remembers.
    """
    rng = np.random.default_rng(seed)
    gc.collect()
    engine = engine_with_catalogue(n_videos, rng)
    sampler = ItemSampler(n_videos, rng)
    spe = days * DAY / n_events
    chunk = max(1, min(10_000, n_events // samples))
    every = max(chunk, n_events // samples // chunk * chunk)
    series: list[tuple[int, float]] = [(0, rss_mb())]
    t = time.perf_counter()
    drift = (n_users - active) / max(1, n_events)
    for start in range(0, n_events, chunk):
        m = min(chunk, n_events - start)
        j = np.arange(start, start + m)
        users = (j * drift).astype(np.int64) + rng.integers(0, active, m)
        events = synthetic_events(sampler.draw(m), users, rng, start, spe)
        for i, e in enumerate(events):
            if (start + i) % rank_every == 0:
                engine.on_event(e)
            else:
                d = engine.user_step(e)
                if d is not None:
                    engine.apply_item_deltas(d)
        del events
        if (start + m) % every == 0 or start + m == n_events:
            series.append((start + m, rss_mb()))
            print(f"  memory: {start + m:,} events, RSS {series[-1][1]:,.0f} MB, "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
    seconds = time.perf_counter() - t
    st = state_bytes(engine)
    engine.index.close()
    del engine
    gc.collect()

    q = max(1, len(series) // 4)
    first = (series[q][1] - series[0][1]) / max(1, series[q][0] - series[0][0]) * 1e5
    last = (series[-1][1] - series[-1 - q][1]) / max(1, series[-1][0] - series[-1 - q][0]) * 1e5
    levels = last <= 0.2 * max(first, 1e-9) or last < 1.0
    setting = (
        f"{n_events:,} synthetic events over {days:g} days, {n_videos:,} videos, {n_users:,} "
        f"users ({active:,} active at a time), 1 in {rank_every} ranked; {seconds:.0f} s"
    )
    detail = ", ".join(f"{k[6:]} {v:,.0f}" for k, v in st.items() if k.startswith("video:"))
    rows = [
        Row(
            "memory",
            "state per user (engine)",
            f"{st['per_user']:,.0f} B",
            f"tracemalloc of the users rebuilt from a snapshot, mean over {st['users']:,} users "
            f"({st['heavy_users']} at the dedup cap); its table value (msgpack, no outbox): "
            f"{st['json_per_user']:,.0f} B; a user at every cap: {st['capped_user']:,.0f} B",
            "<= 2 KB",
            st["per_user"] <= 2048,
        ),
        Row(
            "memory",
            "state per video beyond its vector (engine)",
            f"{st['per_video']:,.0f} B",
            f"tracemalloc of the rebuilt item state / {st['videos']:,} videos ({detail} B); "
            "the Qdrant index's own copy not included",
            "<= 4 KB",
            st["per_video"] <= 4096,
        ),
        Row(
            "memory",
            "RSS over the replay",
            f"{series[0][1]:,.0f} -> {series[len(series) // 2][1]:,.0f} -> {series[-1][1]:,.0f} MB",
            f"{setting}; growth per 100k events: first quarter {first:.1f} MB, last quarter "
            f"{last:.1f} MB",
            "levels off",
            levels,
        ),
    ]
    return rows, series


def memory_in_child(kwargs: dict[str, Any]) -> tuple[list[Row], list[tuple[int, float]]]:
    """``bench_memory`` in a fresh process, so its RSS starts clean of the other sections'."""
    with tempfile.NamedTemporaryFile(suffix=".json", prefix="vidrec-bench-") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "streams.bench.memory", json.dumps(kwargs), f.name],
            cwd=str(Path(__file__).resolve().parents[2]),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the memory benchmark exited with {proc.returncode}")
        result = json.loads(Path(f.name).read_text(encoding="utf-8"))
    rows = [Row(**r) for r in result["rows"]]
    return rows, [(int(e), float(m)) for e, m in result["series"]]


def memory_main(argv: list[str]) -> int:
    kwargs, out = json.loads(argv[0]), argv[1]
    rows, series = bench_memory(**kwargs)
    payload = {"rows": [r.__dict__ for r in rows], "series": series}
    Path(out).write_text(json.dumps(payload), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(memory_main(sys.argv[1:]))
