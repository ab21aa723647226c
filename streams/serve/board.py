"""The dashboard's figures: every worker's latest ``WorkerStats`` and a short history of them.

Workers publish their figures on the compacted ``stats`` topic; a server reads it and feeds
each record to ``Board.apply``, then calls ``Board.tick`` once a second to add one point per
second to the charts. Pure and synchronous, so it is tested without a broker.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from schemas.wire import WorkerStats


@dataclass
class _Worker:
    stats: WorkerStats
    events_per_s: float = 0.0
    lists_per_s: float = 0.0


class Board:
    """Aggregates workers' records into one point per tick.

    Rates come from two successive records of the same worker, so a restarted worker (its
    counters back to zero) shows no negative rate. A worker silent for ``stale_s`` is left out
    of the totals: it stopped, or its partitions moved to another worker.
    """

    def __init__(self, history_s: float = 600.0, stale_s: float = 30.0) -> None:
        self.stale_s = stale_s
        self.workers: dict[str, _Worker] = {}
        self.points: deque[dict[str, Any]] = deque(maxlen=max(1, int(history_s)))
        self.bad_records = 0

    def apply(self, raw: bytes | None) -> None:
        """One record of the stats topic; a malformed one is counted, never raised."""
        if raw is None:
            return
        try:
            s = WorkerStats.from_json(raw)
        except ValueError:
            self.bad_records += 1
            return
        old = self.workers.get(s.worker_id)
        w = _Worker(s)
        if old is not None and s.at > old.stats.at and s.events >= old.stats.events:
            dt = s.at - old.stats.at
            w.events_per_s = (s.events - old.stats.events) / dt
            w.lists_per_s = max(0, s.lists - old.stats.lists) / dt
        elif old is not None and s.at <= old.stats.at:
            return  # an older record (a re-read of the compacted topic) changes nothing
        self.workers[s.worker_id] = w

    def live(self, now: float | None = None) -> list[_Worker]:
        now = time.time() if now is None else now
        return [w for w in self.workers.values() if now - w.stats.at <= self.stale_s]

    def tick(self, now: float | None = None) -> dict[str, Any]:
        """Add (and return) the point for ``now``: totals over the live workers."""
        now = time.time() if now is None else now
        live = self.live(now)
        window = sum(w.stats.quality_window for w in live if w.stats.hr10 is not None)

        def weighted(attr: str) -> float | None:
            if not window:
                return None
            return (
                sum(
                    getattr(w.stats, attr) * w.stats.quality_window
                    for w in live
                    if getattr(w.stats, attr) is not None
                )
                / window
            )

        def worst(attr: str) -> float | None:
            vals = [getattr(w.stats, attr) for w in live if getattr(w.stats, attr) is not None]
            return max(vals) if vals else None

        point = {
            "t": now,
            "workers": len(live),
            "events_per_s": sum(w.events_per_s for w in live),
            "lists_per_s": sum(w.lists_per_s for w in live),
            # the slowest worker's quantile: what the worst-served users see
            "latency_p50_ms": worst("latency_p50_ms"),
            "latency_p99_ms": worst("latency_p99_ms"),
            "lag": sum(sum(w.stats.lag.values()) for w in live),
            "hr10": weighted("hr10"),
            "ndcg10": weighted("ndcg10"),
            "quality_window": window,
            "dead_letters": sum(w.stats.dead_letters for w in live),
        }
        self.points.append(point)
        return point

    def data(self) -> dict[str, Any]:
        """What ``GET /dashboard/data`` returns, beside the server's own figures."""
        return {
            "series": list(self.points),
            "workers": [
                {
                    "worker_id": w.stats.worker_id,
                    "at": w.stats.at,
                    "events": w.stats.events,
                    "lists": w.stats.lists,
                    "events_per_s": round(w.events_per_s, 3),
                    "dead_letters": w.stats.dead_letters,
                    "degraded_searches": w.stats.degraded_searches,
                    "videos_embedded": w.stats.videos_embedded,
                    "lag": w.stats.lag,
                    "hr10": w.stats.hr10,
                    "ndcg10": w.stats.ndcg10,
                }
                for w in sorted(self.workers.values(), key=lambda w: w.stats.worker_id)
            ],
        }
