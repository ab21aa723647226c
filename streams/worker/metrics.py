"""A worker's figures: Prometheus metrics on its web server's ``/metrics``, and the
``WorkerStats`` record it publishes on the compacted ``stats`` topic for the dashboard.

Both read the same sources, so a Grafana panel and the dashboard never disagree: the adapter's
counters and the engine's degraded searches and live quality are read when asked for (a custom
collector: nothing is added to the hot path for them), the agents report each micro-batch once
(``after_user_batch``/``after_video_batch``: list latencies, dead letters, processed offsets),
and the consumer lag is refreshed by a timer (``refresh_lag``), since the consumer's position
is only known through an awaitable call.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.wire import DEAD_LETTERS, RECOMMENDATIONS, TRIGGER_TS_HEADER, WorkerStats
from workers.adapter import Meta, Out
from workers.thumbnails import OUTCOMES

log = logging.getLogger(__name__)

# event -> list latency buckets, seconds: a worker's p50 is tens of ms, its p99 under load a few
# hundred; a backlog after a restart reaches seconds to minutes
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip


def worker_id() -> str:
    """``host:pid``: unique among running workers, readable on a dashboard."""
    return f"{socket.gethostname()}:{os.getpid()}"


class WorkerMetrics:
    """Everything a worker reports, in one Prometheus registry of its own.

    A registry per worker, not the process-wide default: tests run several apps in one
    process, and faust's sensor registers its metrics once per registry.

    Parameters
    ----------
    adapter
        The worker's ``EngineAdapter`` (its ``counts`` and its ``engine``).
    stages
        The input stages this worker reads (``videos``, ``user-events``): the label values of
        ``vidrec_dead_letters_total``, present from the start so an alert on their rate has a
        series to read.
    latency_window_s
        How far back the ``WorkerStats`` latency quantiles look.
    """

    def __init__(
        self,
        adapter: Any,
        stages: Sequence[str],
        *,
        worker: str | None = None,
        latency_window_s: float = 30.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.adapter = adapter
        self.worker_id = worker or worker_id()
        self.started_at = time.time()
        self.registry = registry or CollectorRegistry()
        self.dead_letters: dict[str, int] = dict.fromkeys(stages, 0)
        self.latency = Histogram(
            "vidrec_event_to_list_seconds",
            "From a user event's Kafka timestamp to its list handed to the producer.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.latency_window_s = latency_window_s
        self._recent: deque[tuple[float, float]] = deque(maxlen=20_000)  # (sent at, seconds)
        self.processed: dict[tuple[str, int], int] = {}  # last offset handled per partition
        self.lag: dict[tuple[str, int], int] = {}
        self.stats_failures = 0
        self.registry.register(_Figures(self))

    # -- what the agents report, once per micro-batch ---------------------------------------
    def after_user_batch(
        self, records: Iterable[tuple[Any, Any, Meta]], outs: Iterable[Out], stage: str
    ) -> None:
        """A micro-batch of ``stage`` handled and its outputs sent."""
        now = time.time()
        done = self.processed
        for _, _, meta in records:
            done[(meta.topic, meta.partition)] = meta.offset
        dead = 0
        observe, recent = self.latency.observe, self._recent
        for o in outs:
            if o.stage == RECOMMENDATIONS:
                ts = o.headers.get(TRIGGER_TS_HEADER) if o.headers else None
                if ts is not None:
                    s = now - int(ts) / 1000.0
                    observe(s)
                    recent.append((now, s))
            elif o.stage == DEAD_LETTERS:
                dead += 1
        if dead:
            self.dead_letters[stage] = self.dead_letters.get(stage, 0) + dead

    after_video_batch = after_user_batch

    # -- consumer lag ----------------------------------------------------------------------
    async def refresh_lag(self, consumer: Any, topics: Iterable[str]) -> None:
        """Records behind per assigned partition of ``topics``: the partition's highwater mark
        minus the next offset to handle (the last one this worker's agents handled, plus one;
        before the first, the consumer's position)."""
        wanted = set(topics)
        lag: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            if tp.topic not in wanted:
                continue
            high = consumer.highwater(tp)
            if high is None:
                continue  # no fetch answered yet
            done = self.processed.get((tp.topic, tp.partition))
            nxt = done + 1 if done is not None else await consumer.position(tp)
            if nxt is not None:
                lag[(tp.topic, tp.partition)] = max(0, int(high) - int(nxt))
        self.lag = lag

    # -- the stats record ------------------------------------------------------------------
    def latency_quantiles_ms(self, now: float | None = None) -> tuple[float | None, float | None]:
        """p50 and p99 of the lists sent within ``latency_window_s``."""
        now = time.time() if now is None else now
        recent = self._recent
        while recent and now - recent[0][0] > self.latency_window_s:
            recent.popleft()
        if not recent:
            return None, None
        p50, p99 = np.percentile([s for _, s in recent], [50, 99]) * 1000.0
        return round(float(p50), 3), round(float(p99), 3)

    def stats(self, now: float | None = None) -> WorkerStats:
        now = time.time() if now is None else now
        c = self.adapter.counts
        engine = self.adapter.engine
        hr, ndcg, window = live_quality(engine)
        p50, p99 = self.latency_quantiles_ms(now)
        return WorkerStats(
            worker_id=self.worker_id,
            at=now,
            started_at=self.started_at,
            events=c.get("events", 0),
            lists=c.get("published", 0),
            dead_letters=sum(self.dead_letters.values()),
            degraded_searches=getattr(engine, "degraded_searches", 0),
            videos_embedded=c.get("videos_embedded", 0),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            lag={f"{t}:{p}": n for (t, p), n in sorted(self.lag.items())},
            hr10=hr,
            ndcg10=ndcg,
            quality_window=window,
        )


def live_quality(engine: Any) -> tuple[float | None, float | None, int]:
    live = getattr(engine, "live", None)
    return live.get() if live is not None else (None, None, 0)


class _Figures(Collector):
    """The counters and gauges read from the adapter and the engine at each scrape."""

    def __init__(self, m: WorkerMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        m = self.m
        c = m.adapter.counts
        engine = m.adapter.engine
        yield CounterMetricFamily(
            "vidrec_events", "User events accepted (decoded, keyed right).", c.get("events", 0)
        )
        yield CounterMetricFamily(
            "vidrec_lists_published", "Recommendation lists published.", c.get("published", 0)
        )
        dead = CounterMetricFamily(
            "vidrec_dead_letters",
            "Records sent to the dead letters, by input stage.",
            labels=["stage"],
        )
        for stage, n in sorted(m.dead_letters.items()):
            dead.add_metric([stage], n)
        yield dead
        yield CounterMetricFamily(
            "vidrec_degraded_searches",
            "Lists ranked without content candidates because the vector search failed.",
            getattr(engine, "degraded_searches", 0),
        )
        yield CounterMetricFamily(
            "vidrec_videos_embedded", "Videos embedded by this worker.", c.get("videos_embedded", 0)
        )
        thumbs = CounterMetricFamily(
            "vidrec_thumbnails",
            "Thumbnails read by the embed agent, by outcome (ok, missing, failed, too_large, "
            "timeout, skipped): all but ok left their video with its text vector alone.",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            thumbs.add_metric([outcome], c.get(f"thumbnails_{outcome}", 0))
        yield thumbs
        lag = GaugeMetricFamily(
            "vidrec_consumer_lag",
            "Records behind, per partition read.",
            labels=["topic", "partition"],
        )
        for (topic, part), n in sorted(m.lag.items()):
            lag.add_metric([topic, str(part)], n)
        yield lag
        hr, ndcg, window = live_quality(engine)
        nan = math.nan
        yield GaugeMetricFamily(
            "vidrec_live_hr_at_10",
            "Share of next positive events that were in the top 10 of the list shown before "
            "(sliding window).",
            nan if hr is None else hr,
        )
        yield GaugeMetricFamily(
            "vidrec_live_ndcg_at_10", "NDCG@10 of the same events (sliding window).",
            nan if ndcg is None else ndcg,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "vidrec_live_quality_window", "Next positive events the live figures cover.", window
        )
