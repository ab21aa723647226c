"""Decayed item popularity: what is trending now, with a short half-life, in one numpy array.

The trending list (``top_n`` items) is refreshed while learning, every ``refresh_every`` events,
because a full sort per event would make every event cost O(catalogue); scoring only reads it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from workers import kernels
from workers.decay import DecayClock
from workers.models import Observation

PopDelta = tuple[int, float, float]  # (item index, amount, ts)


class Popularity:
    """Decayed, weighted view counts per item; negative weights (skips, dislikes) subtract.

    Counts are stored as plain sums, never floored, so that increments commute and a forgotten
    user's increments can be subtracted exactly; readers clip negative counts at zero.
    """

    def __init__(
        self, half_life_s: float = 86400.0, refresh_every: int = 50, top_n: int = 200
    ) -> None:
        self.clock = DecayClock(half_life_s)
        self.refresh_every = refresh_every
        self.top_n = top_n
        self.counts = np.zeros(0, dtype=np.float64)
        self.views = np.zeros(0, dtype=np.float64)  # positive events per item, never decayed
        self._since_refresh = 0
        self._top: np.ndarray = np.zeros(0, dtype=np.int64)
        self._last_ts: float | None = None

    def _grow(self, n: int) -> None:
        if n > len(self.counts):
            cap = max(n, 2 * len(self.counts), 64)
            counts = np.zeros(cap, dtype=np.float64)
            counts[: len(self.counts)] = self.counts
            views = np.zeros(cap, dtype=np.float64)
            views[: len(self.views)] = self.views
            self.counts, self.views = counts, views

    def apply_many(self, deltas: Iterable[PopDelta]) -> None:
        for idx, amount, ts in deltas:
            if self.clock.needs_rebase(ts):
                self.counts *= self.clock.rebase(ts)
            self._grow(idx + 1)
            self.counts[idx] += amount * self.clock.factor(ts)
            if amount > 0:
                self.views[idx] += 1.0
            if self._last_ts is None or ts > self._last_ts:
                self._last_ts = ts
            self._since_refresh += 1
        if self._since_refresh >= self.refresh_every or len(self._top) < min(
            self.top_n, self.refresh_every
        ):
            self._refresh()

    def subtract_many(self, deltas: Iterable[PopDelta]) -> None:
        """Take back increments that ``apply_many`` added (a forgotten user's), views included."""
        for idx, amount, ts in deltas:
            if self.clock.needs_rebase(ts):
                self.counts *= self.clock.rebase(ts)
            self._grow(idx + 1)
            inc = amount * self.clock.factor(ts)
            left = self.counts[idx] - inc
            # what is left of an item only this user counted is rounding noise: make it zero
            self.counts[idx] = 0.0 if abs(left) <= 1e-12 * abs(inc) else left
            if amount > 0:
                self.views[idx] = max(0.0, self.views[idx] - 1.0)
        self._refresh()

    def deltas_one(self, obs: Observation) -> list[PopDelta]:
        """One increment: the event's weight on its item (negative weights subtract)."""
        return [(obs.item, obs.weight, obs.ts)] if obs.weight != 0 else []

    def learn_one(self, obs: Observation) -> None:
        self.apply_many(self.deltas_one(obs))

    def score_many(self, query: Observation, items: np.ndarray) -> np.ndarray:
        """The same for every user: ``normalised``."""
        return self.normalised(items)

    def forget_user(self, user: Any) -> bool:
        """Holds nothing per user: a user's views leave through ``subtract_many``."""
        return False

    def normalised(self, items: np.ndarray) -> np.ndarray:
        """``log1p`` of counts scaled so that the most popular item scores 1."""
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros(len(items), dtype=np.float32)
        if len(self.counts) == 0 or len(items) == 0:
            return out
        top = float(self.counts.max())
        if top <= 0:
            return out
        return kernels.log_popularity(items, self.counts, top, float(self._ref()))

    def views_of(self, items: np.ndarray) -> np.ndarray:
        """How many positive events each item has had (0 for items never seen)."""
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros(len(items), dtype=np.float64)
        ok = items < len(self.views)
        out[ok] = self.views[items[ok]]
        return out

    def _ref(self) -> float:
        """One unit of weight at the latest time, in inflated units."""
        return self.clock.factor(self._last_ts) if self._last_ts is not None else 1.0

    def trending(self, n: int) -> np.ndarray:
        """Indices of the (up to ``top_n``) most popular items, best first, as last refreshed."""
        return self._top[:n]

    def _refresh(self) -> None:
        counts = self.counts
        m = min(self.top_n, int(np.count_nonzero(counts > 0)))
        if m == 0:
            self._top = np.zeros(0, dtype=np.int64)
        else:
            part = np.argpartition(-counts, m - 1)[:m]
            self._top = part[np.argsort(-counts[part], kind="stable")]
        self._since_refresh = 0

    def to_state(self) -> dict[str, Any]:
        return {
            "clock": self.clock.to_state(),
            "refresh_every": self.refresh_every,
            "top_n": self.top_n,
            "counts": self.counts.copy(),
            "views": self.views.copy(),
            "last_ts": self._last_ts,
            "top": self._top.copy(),
            "since_refresh": self._since_refresh,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Popularity:
        obj = cls(state["clock"]["half_life_s"], state["refresh_every"], state["top_n"])
        obj.clock = DecayClock.from_state(state["clock"])
        obj.counts = np.array(state["counts"], dtype=np.float64)
        obj.views = np.array(state["views"], dtype=np.float64)
        obj._last_ts = state["last_ts"]
        obj._top = np.array(state["top"], dtype=np.int64)
        obj._since_refresh = state["since_refresh"]
        return obj
