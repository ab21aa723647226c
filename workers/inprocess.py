"""The embedded run: drive an engine from a sequence of messages in log order, in-process.

This is the loop behind ``vidrec run`` and ``vidrec evaluate``: videos are embedded in batches
(consecutive videos share one encoder call, and their thumbnails are read together under one
deadline when a ``ThumbnailReader`` is given), each user event is scored by the evaluator before
the engine learns from it (predict, then learn), and every published list is handed on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from river import stats as river_stats

from schemas import ErasureReceipt, ForgetUser, Recommendations, UserEvent, VideoPublished
from workers.engine import Engine, features_for, sources_on
from workers.evaluation import Evaluator
from workers.ranker import META_FEATURES
from workers.settings import EngineSettings

if TYPE_CHECKING:
    from workers.baselines import Baseline
    from workers.thumbnails import ThumbnailReader


@dataclass
class RunStats:
    videos: int = 0
    events: int = 0
    duplicates: int = 0
    forgets: int = 0
    published: int = 0
    bad: int = 0
    seconds: float = 0.0
    # streaming quantiles (river's P² estimator): a replay of any length in constant memory
    latency_p50: river_stats.Quantile = field(default_factory=lambda: river_stats.Quantile(0.5))
    latency_p99: river_stats.Quantile = field(default_factory=lambda: river_stats.Quantile(0.99))

    def add_latency(self, ms: float) -> None:
        self.latency_p50.update(ms)
        self.latency_p99.update(ms)

    def summary(self) -> dict[str, float]:
        p50, p99 = self.latency_p50.get(), self.latency_p99.get()
        return {
            "videos": self.videos,
            "events": self.events,
            "duplicates": self.duplicates,
            "forgets": self.forgets,
            "published": self.published,
            "bad_lines": self.bad,
            "seconds": round(self.seconds, 2),
            "events_per_s": round(self.events / self.seconds, 1) if self.seconds else 0.0,
            "latency_p50_ms": round(float(p50 or 0.0), 3),
            "latency_p99_ms": round(float(p99 or 0.0), 3),
        }


def drive(
    messages: Iterable[Any],
    engine: Engine | Baseline,
    *,
    evaluator: Evaluator | None = None,
    on_recommendations: Callable[[Recommendations], None] | None = None,
    on_bad: Callable[[Any], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    video_batch: int = 64,
    event_batch: int = 1,
    thumbnails: ThumbnailReader | None = None,
) -> RunStats:
    """Feed messages to ``engine`` in order; anything that is not a message goes to ``on_bad``.

    ``engine`` is the engine or anything with its ``on_videos``, ``on_event`` and ``on_forget``
    (the independent baselines of ``workers.baselines``).

    ``event_batch`` > 1 hands consecutive user events to ``engine.on_events`` in micro-batches
    of up to that many, as a loaded worker takes them. A batch ends before anything else (a
    video, a forget) and before a second event of a user already in it, so the evaluator still
    scores each event against the list its user held before it.

    ``thumbnails`` reads each video batch's thumbnails into visual descriptors for the hybrid
    engine (the baselines have no use for them); its counts say what became of them. One
    reader shared by several replays fetches each thumbnail once (its cache).
    """
    stats = RunStats()
    pending: list[VideoPublished] = []
    events: list[UserEvent] = []
    users: set[str] = set()
    batch = event_batch if hasattr(engine, "on_events") else 1
    t0 = time.perf_counter()

    visual = thumbnails is not None and isinstance(engine, Engine)

    def flush() -> None:
        if pending:
            if visual:
                assert thumbnails is not None and isinstance(engine, Engine)
                engine.on_videos(
                    pending, visuals=thumbnails.read_many([v.thumbnail_url for v in pending])
                )
            else:
                engine.on_videos(pending)
            stats.videos += len(pending)
            pending.clear()

    def published(recs: Recommendations | None) -> None:
        stats.events += 1
        if recs is None:
            stats.duplicates += 1
            return
        stats.published += 1
        stats.add_latency(recs.latency_ms)
        if evaluator is not None:
            evaluator.on_recommendations(recs)
        if on_recommendations is not None:
            on_recommendations(recs)

    def flush_events() -> None:
        if events:
            for recs in engine.on_events(events):  # type: ignore[union-attr]
                published(recs)
            events.clear()
            users.clear()

    for n, msg in enumerate(messages, start=1):
        if isinstance(msg, UserEvent):
            flush()
            if batch > 1:
                if msg.user_id in users:
                    flush_events()
                if evaluator is not None:
                    evaluator.on_event(msg)
                events.append(msg)
                users.add(msg.user_id)
                if len(events) >= batch:
                    flush_events()
            else:
                if evaluator is not None:
                    evaluator.on_event(msg)
                published(engine.on_event(msg))
        else:
            flush_events()
            if isinstance(msg, VideoPublished):
                if evaluator is not None:
                    evaluator.on_video(msg)
                pending.append(msg)
                if len(pending) >= video_batch:
                    flush()
            elif isinstance(msg, ForgetUser):
                flush()
                engine.on_forget(msg)
                stats.forgets += 1
            elif isinstance(msg, Recommendations | ErasureReceipt):
                pass  # outputs, e.g. in a log captured from the topics: nothing to learn
            else:
                stats.bad += 1
                if on_bad is not None:
                    on_bad(msg)
        if on_progress is not None and n % 1000 == 0:
            on_progress(n)
    flush_events()
    flush()
    stats.seconds = time.perf_counter() - t0
    return stats


class CachedEncoder:
    """Wraps an encoder with a text -> vector cache, so several replays embed each video once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.name = encoder.name
        self._cache: dict[str, np.ndarray] = {}

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            for t, v in zip(missing, self.encoder.encode_many(missing), strict=True):
                self._cache[t] = v
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


# Single-source configurations of the engine itself: name -> (sources, features, overrides).
# The independent baselines (item-knn, online-mf, popularity) live in ``workers.baselines``.
BASELINES: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]] = {
    "engine popularity": (("popular",), ("popular",), {"popularity_half_life_days": 3650.0}),
    "recent popularity": (("popular",), ("popular",), {"popularity_half_life_days": 1.0}),
    "engine co-occurrence": (("cooc",), ("cooc",), {}),
    "engine factors": (("mf",), ("mf",), {}),
    "content": (("content",), ("content",), {}),
    # the next-video transformer alone (issue 17), ranking its own top candidates
    "sequential only": (("seq",), ("seq",), {"seq_enabled": True, "candidates_seq": 100}),
}
BEHAVIOUR_ONLY = (
    "engine popularity",
    "recent popularity",
    "engine co-occurrence",
    "engine factors",
)
INDEPENDENT = ("item-knn", "online-mf", "popularity")
# The hybrid without some of its features (an ablation): name -> the features left out
ABLATIONS: dict[str, tuple[str, ...]] = {
    **{f"hybrid-no-{f}": (f,) for f in (*META_FEATURES, "visual")},
    "hybrid-no-metadata": META_FEATURES,
}


def make_engine(
    name: str, settings: EngineSettings, encoder: Any, index_factory: Callable[[], Any]
) -> Engine | Baseline:
    """The hybrid engine (``name='hybrid'``), the hybrid without some features (``ABLATIONS``),
    one of its single-source configurations, or one of the independent baselines of
    ``workers.baselines`` (which take no encoder or index)."""
    if name in INDEPENDENT:
        from workers.baselines import make_baseline

        return make_baseline(name, k=settings.k)
    if name == "hybrid":
        return Engine(settings, encoder, index_factory())
    if name in ABLATIONS:
        hybrid = features_for(sources_on(settings))
        kept = [f for f in hybrid if f not in ABLATIONS[name]]
        return Engine(settings, encoder, index_factory(), features=kept)
    sources, features, overrides = BASELINES[name]
    s = settings.model_copy(update=overrides)
    index = index_factory() if "content" in sources else None
    eng = Engine(s, encoder, index, sources=sources, features=features, learn_fusion=False)
    eng.cfg = type(eng.cfg)(**{**eng.cfg.__dict__, "fresh_slots": 0})
    return eng
