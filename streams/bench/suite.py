"""``vidrec bench``: the benchmark suite (engine, streaming, freshness, memory) as one table.

It is a benchmark, never a test: figures depend on what else the machine runs, so the load
average is printed with them, and every ratio is measured side by side in the same run. The
sections (``--only``) are:

- ``encoder``: titles/s of the content encoder, fp32 and int8;
- ``sample``: the embedded engine replaying the shipped sample (real encoder, real behaviour);
- ``engine``: the embedded engine on synthetic catalogues (``--sizes``): user events/s with a
  fresh top-k per event, only the event loop timed;
- ``streaming``: one worker on the broker against a raw aiokafka consume-and-produce
  passthrough, and two workers;
- ``freshness``: event produced -> list received, at a steady rate; video produced -> found by a
  content search; the embed agent's titles/s against the raw encoder's;
- ``memory``: bytes of state per user and per video, and RSS over a long synthetic replay.

The table goes to stdout and, with a PNG plot, to ``--out``. ``--quick`` is the tiny setting
the tests run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SECTIONS = ("encoder", "sample", "engine", "streaming", "freshness", "memory")
DIM = 384
DAY = 86_400.0
T_START = 1_700_000_000.0  # stream time of the first synthetic event (epoch seconds)
PARTITIONS = 6
# What a user does, and how often (the engine weighs each type; skips are negative feedback).
EVENT_MIX = (
    ("play", 0.35),
    ("watch", 0.25),
    ("complete", 0.20),
    ("like", 0.07),
    ("share", 0.03),
    ("skip", 0.10),
)
_HOOKS = ("", "how to", "best", "easy", "top 10", "why", "my first", "ultimate", "live:")
_TOPICS = (
    "pasta", "sourdough bread", "football", "guitar", "python", "yoga", "minecraft", "cats",
    "tokyo travel", "makeup", "piano", "chess", "electric cars", "drones", "coffee", "gardening",
    "marathon training", "home workout", "budget gaming pc", "street food", "jazz", "physics",
)  # fmt: skip
_KINDS = (
    "recipe", "highlights", "tutorial", "review", "vlog", "challenge", "compilation", "tips",
    "for beginners", "explained", "unboxing", "in 10 minutes", "mistakes to avoid",
)  # fmt: skip


# -- the table ----------------------------------------------------------------------------------
@dataclass
class Row:
    """One line of the table: a figure, what it measured, and its target when it has one."""

    section: str
    name: str
    figure: str
    setting: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    """Rows in the order measured, and the series the plot draws."""

    rows: list[Row] = field(default_factory=list)
    engine_rates: dict[int, float] = field(default_factory=dict)
    stream_rates: dict[str, float] = field(default_factory=dict)
    latencies: dict[str, tuple[float, float]] = field(default_factory=dict)
    rss: list[tuple[int, float]] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        for r in rows:
            self.rows.append(r)
            print(f"  {r.name}: {r.figure}  [{r.setting}]", file=sys.stderr, flush=True)


def _verdict(r: Row) -> str:
    if not r.target:
        return ""
    if r.met is None:
        return r.target
    return f"{r.target}: {'met' if r.met else 'MISSED'}"


def format_rows(rows: Sequence[Row]) -> str:
    """The table as markdown (also what is printed)."""
    lines = ["| benchmark | figure | target | setting |", "|---|---:|---|---|"]
    lines += [f"| {r.name} | {r.figure} | {_verdict(r)} | {r.setting} |" for r in rows]
    return "\n".join(lines)


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cpus"


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# -- synthetic data -----------------------------------------------------------------------------
def unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def synthetic_titles(n: int, start: int = 0, seed: int = 0) -> list[str]:
    """Generated titles of varied length; the serial number keeps every text (and vector) unique."""
    rng = np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + n):
        t = f"{rng.choice(_HOOKS)} {rng.choice(_TOPICS)} {rng.choice(_KINDS)}".strip()
        if rng.random() < 0.3:
            t += ". Today: " + " ".join(rng.choice(_TOPICS + _KINDS, size=rng.integers(3, 20)))
        out.append(f"{t} #{i}")
    return out


def synthetic_videos(
    start: int, n: int, rng: np.random.Generator, titles: Sequence[str] | None = None
) -> list[Any]:
    """Videos ``v<start>..``, published over the 30 days before ``T_START``.

    Built with ``model_construct``: a million validated models would cost more than the engine
    work they feed, and every value here is valid by construction.
    """
    from schemas import VideoPublished

    pubs = T_START - rng.uniform(0.0, 30 * DAY, size=n)
    return [
        VideoPublished.model_construct(
            video_id=f"v{start + i}",
            title=titles[i] if titles is not None else f"video {start + i}",
            category="bench",
            published_at=datetime.fromtimestamp(float(pubs[i]), UTC),
        )
        for i in range(n)
    ]


class ItemSampler:
    """Draws video indices with a Zipf(1) popularity over a random order of the catalogue."""

    def __init__(self, n: int, rng: np.random.Generator, exponent: float = 1.0) -> None:
        self.order = rng.permutation(n)
        cdf = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent)
        self.cdf = cdf / cdf[-1]
        self.rng = rng

    def draw(self, k: int) -> np.ndarray:
        ranks = np.searchsorted(self.cdf, self.rng.random(k), side="right")
        return self.order[np.minimum(ranks, len(self.order) - 1)]


def synthetic_events(
    items: np.ndarray,
    users: np.ndarray,
    rng: np.random.Generator,
    serial: int,
    seconds_per_event: float = 1.0,
    validate: bool = False,
) -> list[Any]:
    """User events ``e<serial>..`` for the given item and user indices, one per stream second.

    ``validate=False`` uses ``model_construct`` (for the engine loops, which never re-check);
    events that go to the broker are validated, as a producer's are.
    """
    from schemas import EventType, UserEvent

    kinds = [EventType(k) for k, _ in EVENT_MIX]
    p = np.array([w for _, w in EVENT_MIX])
    types = rng.choice(len(kinds), size=len(items), p=p / p.sum())
    make = UserEvent if validate else UserEvent.model_construct
    return [
        make(
            event_id=f"e{serial + j}",
            user_id=f"u{users[j]}",
            video_id=f"v{items[j]}",
            type=kinds[types[j]],
            ts=datetime.fromtimestamp(T_START + (serial + j) * seconds_per_event, UTC),
        )
        for j in range(len(items))
    ]


# -- encoder and sample (the original rows) -----------------------------------------------------
def _sample_titles(path: str, n: int) -> list[str]:
    from schemas import VideoPublished
    from streams.wire.eventlog import read_log

    out: list[str] = []
    for msg in read_log(path):
        if isinstance(msg, VideoPublished):
            out.append(msg.text())
            if len(out) >= n:
                break
    return out


def bench_encoder(texts: list[str]) -> list[Row]:
    from workers.encoder import Encoder
    from workers.settings import EncoderSettings

    rows = []
    rates = {}
    for label, int8 in (("fp32", False), ("int8", True)):
        enc = Encoder(EncoderSettings(quantize_int8=int8))
        enc.encode_many(texts[:64])  # warm-up
        t0 = time.perf_counter()
        enc.encode_many(texts)
        rates[label] = len(texts) / (time.perf_counter() - t0)
        rows.append(
            Row("encoder", f"encoder {label} ({enc.device})", f"{rates[label]:.0f} titles/s",
                f"{len(texts)} titles of the sample, batch {enc.settings.batch_size}")
        )  # fmt: skip
    rows.append(
        Row("encoder", "encoder int8 / fp32", f"x{rates['int8'] / rates['fp32']:.2f}", "same run")
    )
    return rows


def bench_sample(path: str, events: int, encoder_name: str = "minilm") -> list[Row]:
    """The engine replaying the shipped sample (the videos embedded before the clock starts)."""
    from streams.wire.eventlog import read_log
    from workers.encoder import load_encoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.inprocess import CachedEncoder, drive
    from workers.settings import EncoderSettings, EngineSettings, IndexSettings

    msgs = [m for n, m in enumerate(read_log(path)) if not events or n < events]
    model_path = "hashing" if encoder_name == "hashing" else None
    encoder = CachedEncoder(load_encoder(EncoderSettings(model_path=model_path)))
    with tempfile.TemporaryDirectory(prefix="vidrec-bench-") as tmp:
        # Embed first, so that the replay measures the engine, not the encoder.
        encoder.encode_many([m.text() for m in msgs if getattr(m, "kind", "") == "video"])
        index = VideoIndex(IndexSettings(path=str(Path(tmp) / "q")), dim=encoder.dim)
        engine = Engine(EngineSettings(), encoder, index)
        stats = drive(msgs, engine)
        backend = index.backend
        index.close()
    s = stats.summary()
    k = engine.settings.k
    return [
        Row(
            "sample",
            f"embedded engine on the shipped sample, fresh top-{k}",
            f"{s['events'] / stats.seconds:,.0f} events/s",
            f"{s['events']} events, {s['videos']} videos (upserts included), encoder "
            f"{encoder.name}, Qdrant {backend}; "
            f"p50/p99 {s['latency_p50_ms']}/{s['latency_p99_ms']} ms per event",
        )
    ]


# -- engine on synthetic catalogues -------------------------------------------------------------
def _engine_with_catalogue(n: int, rng: np.random.Generator, chunk: int = 20_000) -> Any:
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
        engine = _engine_with_catalogue(n, rng)
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
                f"p50/p99 {_pct(lat, 50):.2f}/{_pct(lat, 99):.2f} ms; catalogue load "
                f"{n / load_s:,.0f} videos/s (generation included), RSS +"
                f"{rss_loaded - rss0:,.0f} MB for the catalogue (process then {peak:,.0f} MB)",
                target,
                met,
            )
        )
        print(f"  engine {n}: {rows[-1].figure}", file=sys.stderr, flush=True)
    return rows, rates


# -- memory -------------------------------------------------------------------------------------
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

    from workers.engine import Ledger, UserState, events_kept

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
    from workers.adapter import user_snapshot
    from workers.catalog import Catalog
    from workers.cooc import CoOccurrence
    from workers.engine import UserState
    from workers.factors import Factors
    from workers.popularity import Popularity

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
    json_b = [len(json.dumps(user_snapshot(engine, u), separators=(",", ":"))) for u in users]

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
    engine = _engine_with_catalogue(n_videos, rng)
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
            f"({st['heavy_users']} at the dedup cap); its JSON table value: "
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
            [sys.executable, "-m", "streams.bench.suite", "--memory", json.dumps(kwargs), f.name],
            cwd=str(Path(__file__).resolve().parents[2]),
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the memory benchmark exited with {proc.returncode}")
        result = json.loads(Path(f.name).read_text(encoding="utf-8"))
    rows = [Row(**r) for r in result["rows"]]
    return rows, [(int(e), float(m)) for e, m in result["series"]]


def _memory_main(argv: list[str]) -> int:
    kwargs, out = json.loads(argv[0]), argv[1]
    rows, series = bench_memory(**kwargs)
    payload = {"rows": [r.__dict__ for r in rows], "series": series}
    Path(out).write_text(json.dumps(payload), encoding="utf-8")
    return 0


# -- streaming ----------------------------------------------------------------------------------
async def _passthrough(kafka: Any, src: str, dst: str, group: str) -> None:
    """Consume ``src`` in a group and produce every record to ``dst``: the broker's ceiling."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import ConsumerRebalanceListener

    from streams.worker.app import aiokafka_kwargs

    class Announce(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            return None

        async def on_partitions_assigned(self, assigned: Any) -> None:
            if assigned:
                print(f"passthrough ready: {len(assigned)} partitions", file=sys.stderr, flush=True)

    kw = aiokafka_kwargs(kafka)
    consumer = AIOKafkaConsumer(
        **kw, group_id=group, auto_offset_reset="earliest", enable_auto_commit=True
    )
    consumer.subscribe([src], listener=Announce())
    producer = AIOKafkaProducer(**kw, acks="all")  # as faust's producer (acks=-1)
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            sent = [
                await producer.send(dst, r.value, key=r.key)
                for records in batch.values()
                for r in records
            ]
            if sent:
                await asyncio.gather(*sent)
    finally:
        await consumer.stop()
        await producer.stop()


def _passthrough_main(argv: list[str]) -> int:
    from streams.wire.settings import KafkaSettings

    src, dst, group = argv
    asyncio.run(_passthrough(KafkaSettings(), src, dst, group))
    return 0


@dataclass
class Arrivals:
    """Records received on one topic: arrival times (wall seconds) and what came with them."""

    times: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0

    def sustained(self) -> float:
        """Records/s between the 10th and the 90th percentile of arrivals (the steady part)."""
        n = len(self.times)
        if n < 2:
            return 0.0
        a, b = n // 10, (9 * n) // 10
        if b <= a or self.times[b - 1] <= self.times[a]:
            a, b = 0, n
        span = self.times[b - 1] - self.times[a]
        if span > 0:
            return (b - 1 - a) / span
        # everything came in one poll: fall back to the whole run
        whole = self.times[-1] - self.started
        return n / whole if whole > 0 else 0.0


def _producer_thread(
    kafka: Any,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    rate: float | None,
    sent_at: dict[bytes, float] | None = None,
) -> threading.Thread:
    """Produce ``records`` (key, value) as fast as possible, or paced at ``rate`` per second."""
    from streams.wire.clients import make_producer

    def run() -> None:
        producer = make_producer(kafka)
        try:
            t0 = time.perf_counter()
            for i, (k, v) in enumerate(records):
                if rate:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                if sent_at is not None:
                    sent_at[k] = time.time()
                producer.send(topic, key=k, value=v)
            producer.flush(timeout=60)
        finally:
            producer.close()

    return threading.Thread(target=run, daemon=True, name="bench-producer")


def _collect(
    kafka: Any,
    topic: str,
    n: int,
    records: Sequence[tuple[bytes, bytes]] = (),
    produce_to: str | None = None,
    rate: float | None = None,
    idle_s: float = 30.0,
    on_record: Callable[[Any], float | None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Arrivals:
    """Tail ``topic`` until ``n`` records arrived (or none for ``idle_s``), producing ``records``
    to ``produce_to`` once the tail is in place (``on_ready`` is called then too); ``on_record``
    may return a latency."""
    from streams.wire.clients import consume, trigger_latency_ms

    out = Arrivals()
    producer: threading.Thread | None = None

    def start() -> None:
        nonlocal producer
        out.started = time.time()
        if records and produce_to:
            producer = _producer_thread(kafka, produce_to, records, rate)
            producer.start()
        if on_ready is not None:
            on_ready()

    for rec in consume(kafka, topic, timeout_s=idle_s, on_ready=start):
        out.times.append(rec.received_ms / 1000.0)
        lat = on_record(rec) if on_record is not None else trigger_latency_ms(rec)
        if lat is not None:
            out.latencies_ms.append(lat)
        if len(out.times) >= n:
            break
    if producer is not None:
        producer.join(timeout=60)
    return out


def _event_records(
    n: int, n_videos: int, n_users: int, serial: int, seed: int
) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    events = synthetic_events(
        ItemSampler(n_videos, rng).draw(n), rng.integers(0, n_users, n), rng, serial, validate=True
    )
    return [(e.user_id.encode(), e.to_json()) for e in events]


def _topics(prefix: str) -> Any:
    from streams.wire.topics import Topics, TopicSettings

    return Topics(
        TopicSettings(prefix=prefix, partitions=PARTITIONS, internal_partitions=PARTITIONS)
    )


def _start_workers(kafka: Any, prefix: str, n: int, encoder: str) -> list[Any]:
    from streams.worker.up import WorkerProcess, wait_until_serving

    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": str(PARTITIONS),
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
        "VIDREC_QDRANT_PATH": None,  # a throwaway embedded index per worker
        "QDRANT_URL": None,
    }
    if encoder == "hashing":
        env["VIDREC_ENCODER_MODEL_PATH"] = "hashing"
    workers = [WorkerProcess(f"{prefix}-w{i}", env=env) for i in range(n)]
    try:
        wait_until_serving(workers, PARTITIONS)
    except RuntimeError:
        for w in workers:
            w.stop()
        raise
    return workers


@dataclass
class StreamSettings:
    events: int
    videos: int
    users: int
    rate: float
    fresh_seconds: float
    video_rate: float
    video_seconds: float
    encoder: str  # "minilm" or "hashing"


def bench_streaming(
    s: StreamSettings, throughput: bool, freshness: bool, report: Report
) -> list[Row]:
    """Throughput (passthrough, 1 worker, 2 workers) and freshness on the broker, in one run."""
    from streams.wire.settings import KafkaSettings
    from streams.wire.topics import create_topics, delete_prefix
    from streams.worker.up import WorkerProcess

    kafka = KafkaSettings()
    rows: list[Row] = []
    run_id = uuid.uuid4().hex[:8]
    titles = synthetic_titles(s.videos)
    events = _event_records(s.events, s.videos, s.users, 0, seed=1)
    rates: dict[str, float] = {}

    # 1. the ceiling: a raw aiokafka consume-and-produce passthrough
    if throughput:
        prefix = f"bench-{run_id}-pass"
        topics = _topics(prefix)
        # The backlog is in the topic before the passthrough starts: the producer never paces it.
        backlog = list(events) * 4
        children: list[WorkerProcess] = []
        got = Arrivals()

        def spawn() -> None:
            children.append(
                WorkerProcess(
                    "passthrough",
                    {"VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers},
                    command=[sys.executable, "-m", "streams.bench.suite", "--passthrough",
                             topics.user_events, topics.recommendations, f"{prefix}-group"],
                )
            )  # fmt: skip

        try:
            create_topics(kafka, topics)
            producer = _producer_thread(kafka, topics.user_events, backlog, None)
            producer.start()
            producer.join()
            got = _collect(kafka, topics.recommendations, len(backlog), on_ready=spawn)
            rates["passthrough"] = got.sustained()
        finally:
            for child in children:
                child.stop()
                if len(got.times) < len(backlog):
                    print("\n".join(child.lines[-30:]), file=sys.stderr)
            delete_prefix(kafka, prefix)
        rows.append(
            Row("streaming", "raw aiokafka passthrough (consume + produce)",
                f"{rates['passthrough']:,.0f} records/s",
                f"{len(got.times)}/{len(backlog)} records of a backlog, {PARTITIONS} partitions, "
                "acks=all, one process")
        )  # fmt: skip

    # 2. one worker: embed the catalogue, then events as fast as it takes them, then paced
    prefix = f"bench-{run_id}-w1"
    topics = _topics(prefix)
    vectors = None
    workers: list[Any] = []
    try:
        create_topics(kafka, topics)
        workers = _start_workers(kafka, prefix, 1, s.encoder)
        from workers.encoder import load_encoder
        from workers.settings import EncoderSettings

        enc_settings = EncoderSettings(model_path="hashing" if s.encoder == "hashing" else None)
        encoder = load_encoder(enc_settings)
        rng = np.random.default_rng(2)
        videos = synthetic_videos(0, s.videos, rng, titles)
        texts = [v.text() for v in videos]  # what the embed agent encodes: title and category
        encoder.encode_many(texts[:64])
        t = time.perf_counter()
        vectors = encoder.encode_many(texts)
        raw = len(texts) / (time.perf_counter() - t)
        vrecs = [(v.video_id.encode(), v.to_json()) for v in videos]
        got = _collect(kafka, topics.video_vectors, len(vrecs), vrecs, topics.videos)
        embed = len(got.times) / (got.times[-1] - got.started) if got.times else 0.0
        time.sleep(1.0)  # the worker's replicator applies the last vectors
        got = _collect(kafka, topics.recommendations, len(events), events, topics.user_events)
        rates["1 worker"] = got.sustained()
        if throughput:
            rows.append(
                Row("streaming", "1 worker, a Recommendations per accepted event",
                    f"{rates['1 worker']:,.0f} events/s",
                    f"{len(got.times)}/{len(events)} events as a backlog, {s.videos} videos, "
                    f"{s.users} users, Zipf items, encoder {s.encoder}",
                    ">= 1,500 events/s", rates["1 worker"] >= 1500)
            )  # fmt: skip
            if "passthrough" in rates:
                ratio = rates["1 worker"] / max(rates["passthrough"], 1e-9)
                rows.append(
                    Row("streaming", "1 worker / passthrough", f"{ratio:.3f}",
                        "same broker, same events, same run", ">= 0.25", ratio >= 0.25)
                )  # fmt: skip
        if freshness:
            rows += _freshness(kafka, topics, s, rates["1 worker"], raw, embed, report)
    finally:
        for w in workers:
            w.stop()
        delete_prefix(kafka, prefix)

    # 3. two workers on the same catalogue (its vectors produced straight to video-vectors)
    if throughput:
        from schemas.wire import encode_video_vector

        prefix = f"bench-{run_id}-w2"
        topics = _topics(prefix)
        try:
            from streams.wire.clients import make_producer

            create_topics(kafka, topics)
            producer = make_producer(kafka)
            videos = synthetic_videos(0, s.videos, np.random.default_rng(2), titles)
            for v, vec in zip(videos, vectors, strict=True):
                value = encode_video_vector(v, vec, "bench", "bench")
                producer.send(topics.video_vectors, key=v.video_id.encode(), value=value)
            producer.flush(60)
            producer.close()
            workers = _start_workers(kafka, prefix, 2, "hashing")
            try:
                got = _collect(
                    kafka, topics.recommendations, len(events), events, topics.user_events
                )
                rates["2 workers"] = got.sustained()
            finally:
                for w in workers:
                    w.stop()
        finally:
            delete_prefix(kafka, prefix)
        two = rates["2 workers"]
        rows.append(
            Row("streaming", "2 workers", f"{two:,.0f} events/s",
                f"{len(got.times)}/{len(events)} events as a backlog; "
                f"x{two / rates['1 worker']:.2f} of 1 worker, same run, same machine as the broker")
        )  # fmt: skip
    report.stream_rates.update(rates)
    return rows


def _freshness(
    kafka: Any,
    topics: Any,
    s: StreamSettings,
    sustained: float,
    raw: float,
    embed: float,
    report: Report,
) -> list[Row]:
    """Event -> list at a steady rate; video -> searchable at ``video_rate``; embed share."""
    from schemas.wire import decode_video_vector
    from streams.wire.clients import trigger_latency_ms
    from workers.index import VideoIndex
    from workers.settings import IndexSettings

    rows = []
    rate = s.rate
    note = ""
    # Paced input costs a worker more than a backlog does (a fetch and a commit per few events
    # instead of per hundreds): at 80% of its backlog rate a worker already queues. Half of it
    # is a rate it keeps up with, so the figure is latency, not queueing.
    if sustained and sustained < 2 * s.rate:
        rate = round(0.5 * sustained)
        note = (
            f" (lowered from {s.rate:g} to half the worker's backlog rate of "
            f"{sustained:,.0f} events/s)"
        )
    n = max(10, int(rate * s.fresh_seconds))
    events = _event_records(n, s.videos, s.users, 10_000_000, seed=3)
    # Where the time goes: input CreateTime -> the worker's send of the list (fetch, micro-batch,
    # engine, the two flushes), then that send -> received (producer, broker, subscriber fetch).
    split: list[tuple[float, float]] = []

    def both(rec: Any) -> float | None:
        lat = trigger_latency_ms(rec)
        if lat is not None:
            split.append(
                (rec.timestamp_ms - (rec.received_ms - lat), rec.received_ms - rec.timestamp_ms)
            )
        return lat

    got = _collect(
        kafka, topics.recommendations, n, events, topics.user_events, rate=rate, on_record=both
    )
    skip = min(len(got.latencies_ms) - 1, int(rate))  # skip the first second
    lat = got.latencies_ms[skip:]
    p50, p99 = _pct(lat, 50), _pct(lat, 99)
    in_worker = [a for a, _ in split[skip:]]
    delivery = [b for _, b in split[skip:]]
    report.latencies["event -> list"] = (p50, p99)
    rows += [
        Row("freshness", f"event produced -> list received, p50 at {rate:g} events/s",
            f"{p50:.1f} ms", f"{len(lat)} events after a 1 s warm-up{note}; of which "
            f"input -> the worker's send p50/p99 {_pct(in_worker, 50):.1f}/"
            f"{_pct(in_worker, 99):.1f} ms, send -> received {_pct(delivery, 50):.1f}/"
            f"{_pct(delivery, 99):.1f} ms", "<= 20 ms",
            p50 <= 20),
        Row("freshness", f"event produced -> list received, p99 at {rate:g} events/s",
            f"{p99:.1f} ms", f"same run; max {max(lat, default=float('nan')):.0f} ms",
            "<= 100 ms", p99 <= 100),
    ]  # fmt: skip

    # video -> searchable: a replica index fed from video-vectors exactly as a worker's is
    nv = max(5, int(s.video_rate * s.video_seconds))
    titles = synthetic_titles(nv, start=s.videos)
    rng = np.random.default_rng(4)
    videos = synthetic_videos(s.videos, nv, rng, titles)
    for v in videos:  # published now, so a freshness filter would keep them too
        object.__setattr__(v, "published_at", datetime.now(UTC))
    vrecs = [(v.video_id.encode(), v.to_json()) for v in videos]
    sent_at: dict[bytes, float] = {}
    with VideoIndex(IndexSettings(path=None, url=None), dim=DIM) as index:

        def searchable(rec: Any) -> float | None:
            video, vec, _ = decode_video_vector(rec.value)
            index.upsert_many(
                [video.video_id], vec[None, :], [{"published_at": video.published_at}]
            )
            hits = index.search(vec, 10)
            if video.video_id not in {h for h, _ in hits}:
                return None
            t0 = sent_at.get(rec.key or b"")
            return None if t0 is None else (time.time() - t0) * 1000.0

        from streams.wire.clients import consume

        producer: threading.Thread | None = None
        lats: list[float] = []

        def start() -> None:
            nonlocal producer
            producer = _producer_thread(kafka, topics.videos, vrecs, s.video_rate, sent_at)
            producer.start()

        seen = 0
        for rec in consume(kafka, topics.video_vectors, timeout_s=30.0, on_ready=start):
            seen += 1
            lat_v = searchable(rec)
            if lat_v is not None:
                lats.append(lat_v)
            if seen >= nv:
                break
        if producer is not None:
            producer.join(60)
    vp50, vp99 = _pct(lats, 50), _pct(lats, 99)
    report.latencies["video -> searchable"] = (vp50, vp99)
    share = embed / raw if raw else 0.0
    rows += [
        Row("freshness", f"video produced -> found by content search, p99 at {s.video_rate:g}/s",
            f"{vp99:.0f} ms", f"{len(lats)}/{nv} videos, p50 {vp50:.0f} ms; embed agent "
            f"({s.encoder}) -> video-vectors -> a replica index fed as a worker's, exact search",
            "<= 2,000 ms", vp99 <= 2000),
        Row("freshness", "embed agent / raw encoder throughput", f"{100 * share:.3g} %",
            f"agent {embed:,.0f} videos/s on a backlog of {s.videos} (to video-vectors, first "
            f"batch's latency included), raw encoder {raw:,.0f} titles/s in this process, "
            f"same texts (title and category), {s.encoder}", ">= 85 %", share >= 0.85),
    ]  # fmt: skip
    return rows


def broker_answers(timeout_s: float = 3.0) -> str | None:
    """``None`` when the broker of ``VIDREC_KAFKA_*`` answers, else why not."""
    from streams.wire.broker import wait_for_broker
    from streams.wire.settings import KafkaSettings

    kafka = KafkaSettings()
    try:
        wait_for_broker(kafka.bootstrap_servers, timeout_s=timeout_s, settings=kafka)
    except TimeoutError as exc:
        return f"no broker at {kafka.bootstrap_servers}: {exc}"
    return None


# p50 and p99 targets of the freshness figures, by the plot's names
LATENCY_TARGETS_MS = {"event -> list": (20.0, 100.0), "video -> searchable": (None, 2000.0)}


# -- the plot -----------------------------------------------------------------------------------
def write_plot(report: Report, path: Path) -> str | None:
    """Draw the figures that have data; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'vidrec[bench]'): no PNG"
    panels = [
        p
        for p, has in (
            ("engine", report.engine_rates),
            ("stream", report.stream_rates),
            ("latency", report.latencies),
            ("rss", report.rss),
        )
        if has
    ]
    if not panels:
        return "nothing to plot"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        if p == "engine":
            sizes = sorted(report.engine_rates)
            ax.loglog(sizes, [report.engine_rates[n] for n in sizes], "o-", label="measured")
            ax.loglog([10_000, 100_000], [3000, 1000], "r^", label="target")
            ax.set(xlabel="videos in the catalogue", ylabel="events/s", title="embedded engine")
            ax.legend()
        elif p == "stream":
            names = list(report.stream_rates)
            ax.bar(names, [report.stream_rates[k] for k in names], color="tab:blue")
            ax.axhline(1500, color="r", ls="--", label="target, 1 worker")
            ax.set_yscale("log")
            ax.set(ylabel="records/s", title="streaming throughput")
            ax.legend()
        elif p == "latency":
            names = list(report.latencies)
            x = np.arange(len(names))
            ax.bar(x - 0.2, [report.latencies[k][0] for k in names], 0.4, label="p50")
            ax.bar(x + 0.2, [report.latencies[k][1] for k in names], 0.4, label="p99")
            for i, name in enumerate(names):
                for dx, goal in zip((-0.2, 0.2), LATENCY_TARGETS_MS.get(name, ()), strict=False):
                    if goal is not None:
                        ax.plot(i + dx, goal, "r_", markersize=22, markeredgewidth=2)
            ax.plot([], [], "r_", label="target")
            ax.set_xticks(x, names)
            ax.set_yscale("log")
            ax.set(ylabel="ms", title="freshness")
            ax.legend()
        else:
            ev, mb = zip(*report.rss, strict=True)
            ax.plot(ev, mb, "o-")
            ax.set(xlabel="events replayed", ylabel="RSS, MiB", title="memory over a replay")
            ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- the command --------------------------------------------------------------------------------
# Settings of the full suite and of --quick (the tests' tiny run); a flag given wins over both.
FULL: dict[str, Any] = {
    "titles": 1000,
    "events": 20000,
    "sample_encoder": "minilm",
    "sizes": "1000,10000,100000,1000000",
    "engine_events": 3000,
    "engine_warmup": 2000,
    "engine_seconds": 30.0,
    "stream_events": 6000,
    "stream_videos": 1500,
    "stream_users": 1000,
    "fresh_seconds": 15.0,
    "video_seconds": 15.0,
    "stream_encoder": "minilm",
    "memory_events": 1_000_000,
    "memory_videos": 10_000,
    "memory_users": 50_000,
    "memory_active": 5_000,
    "memory_days": 180.0,
    "memory_rank_every": 100,
}
QUICK: dict[str, Any] = {
    **FULL,
    "titles": 64,
    "events": 1500,
    "sample_encoder": "hashing",
    "sizes": "1000",
    "engine_events": 200,
    "engine_warmup": 200,
    "engine_seconds": 10.0,
    "stream_events": 300,
    "stream_videos": 100,
    "stream_users": 50,
    "fresh_seconds": 2.0,
    "video_seconds": 2.0,
    "stream_encoder": "hashing",
    "memory_events": 20_000,
    "memory_videos": 1000,
    "memory_users": 2000,
    "memory_active": 500,
    "memory_days": 30.0,
    "memory_rank_every": 50,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite; print one table (markdown + PNG in --out)",
        description="Benchmarks of the encoder, the embedded engine (shipped sample and synthetic "
        "catalogues), streaming throughput and freshness on the broker (VIDREC_KAFKA_*), and "
        "memory. Every figure comes with its setting and its target; ratios are measured side "
        "by side in the same run. The full suite takes about 20-30 minutes on 2 cores: pick "
        "sections with --only, e.g. --only engine,memory --sizes 1000,10000. Unset flags take "
        "the full suite's values, or --quick's.",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all): {','.join(SECTIONS)}",
    )
    p.add_argument("--quick", action="store_true", help="tiny settings (what the tests run)")
    p.add_argument("--out", default=".vidrec/bench", help="folder for bench.md and bench.png")
    p.add_argument("--markdown", help="also write the table as markdown here")

    def opt(g: Any, flag: str, kind: type, text: str, **kw: Any) -> None:
        key = flag.lstrip("-").replace("-", "_")
        g.add_argument(flag, type=kind, default=None, help=f"{text} (full {FULL[key]}, "
                       f"quick {QUICK[key]})", **kw)  # fmt: skip

    g = p.add_argument_group("encoder and sample")
    g.add_argument("--log", help="event log of the sample section (default: the shipped sample)")
    opt(g, "--events", int, "sample log lines replayed (0 = all)")
    opt(g, "--titles", int, "titles encoded per encoder run")
    opt(g, "--sample-encoder", str, "encoder of the sample replay", choices=("minilm", "hashing"))
    g = p.add_argument_group("engine")
    opt(g, "--sizes", str, "comma-separated catalogue sizes")
    opt(g, "--engine-events", int, "events timed per size")
    opt(g, "--engine-warmup", int, "events learned (not ranked) before the timed ones")
    opt(g, "--engine-seconds", float, "time cap of the timed events per size")
    g = p.add_argument_group("streaming and freshness")
    opt(g, "--stream-events", int, "events of each backlog run")
    opt(g, "--stream-videos", int, "catalogue embedded by the worker first")
    opt(g, "--stream-users", int, "users of the streamed events")
    g.add_argument("--rate", type=float, default=500.0, help="steady events/s of the e2e run")
    opt(g, "--fresh-seconds", float, "length of the e2e run")
    g.add_argument("--video-rate", type=float, default=50.0, help="videos/s of the video run")
    opt(g, "--video-seconds", float, "length of the video run")
    opt(
        g, "--stream-encoder", str, "encoder of the embedding worker", choices=("minilm", "hashing")
    )
    g = p.add_argument_group("memory")
    opt(g, "--memory-events", int, "events replayed")
    opt(g, "--memory-videos", int, "catalogue size")
    opt(g, "--memory-users", int, "distinct users in all")
    opt(g, "--memory-active", int, "users active at a time")
    opt(g, "--memory-days", float, "stream time of the replay, days")
    opt(g, "--memory-rank-every", int, "rank one event in N (all are learned)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.sample.generator import default_sample_path

    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"vidrec bench: unknown sections {unknown}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    path = args.log or str(default_sample_path())
    load_before = _load()
    print(f"vidrec bench: {', '.join(only)} ({load_before})", file=sys.stderr, flush=True)
    report = Report()
    t_all = time.perf_counter()
    if "encoder" in only:
        report.add(*bench_encoder(_sample_titles(path, args.titles)))
    if "sample" in only:
        report.add(*bench_sample(path, args.events, args.sample_encoder))
    if "engine" in only:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        rows, rates = bench_engine(
            sizes, args.engine_events, args.engine_warmup, args.engine_seconds
        )
        report.engine_rates.update(rates)
        report.add(*rows)
    if "streaming" in only or "freshness" in only:
        why = broker_answers()
        if why is not None:
            report.add(Row("streaming", "streaming and freshness", "skipped", why))
        else:
            s = StreamSettings(
                args.stream_events,
                args.stream_videos,
                args.stream_users,
                args.rate,
                args.fresh_seconds,
                args.video_rate,
                args.video_seconds,
                args.stream_encoder,
            )
            report.add(*bench_streaming(s, "streaming" in only, "freshness" in only, report))
    if "memory" in only:
        rows, series = memory_in_child(
            {
                "n_events": args.memory_events,
                "n_videos": args.memory_videos,
                "n_users": args.memory_users,
                "active": args.memory_active,
                "days": args.memory_days,
                "rank_every": args.memory_rank_every,
            }
        )
        report.rss = series
        report.add(*rows)
    load_after = _load()
    table = format_rows(report.rows)
    print(table)
    print(f"before: {load_before}; after: {load_after}; {time.perf_counter() - t_all:.0f} s")
    header = (
        f"# vidrec bench\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, sections {', '.join(only)}"
        f"{' (quick)' if args.quick else ''}; before: {load_before}; after: {load_after}.\n\n"
    )
    md = header + table + "\n"
    if report.rss:
        md += "\nRSS over the replay (events, MiB): " + ", ".join(
            f"{e:,}: {m:,.0f}" for e, m in report.rss
        )
        md += "\n"
    if args.markdown:
        Path(args.markdown).write_text(md, encoding="utf-8")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(md, encoding="utf-8")
        why = write_plot(report, out / "bench.png")
        if why:
            print(f"vidrec bench: {why}", file=sys.stderr)
        print(f"vidrec bench: wrote {out / 'bench.md'}" + ("" if why else " and bench.png"),
              file=sys.stderr)  # fmt: skip
    return 0


# The helper processes: ``python -m streams.bench.suite --passthrough|--memory ...``.
if __name__ == "__main__" and sys.argv[1:2] == ["--passthrough"]:
    raise SystemExit(_passthrough_main(sys.argv[2:]))
if __name__ == "__main__" and sys.argv[1:2] == ["--memory"]:
    raise SystemExit(_memory_main(sys.argv[2:]))
