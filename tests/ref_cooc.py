"""The numpy ``CoOccurrence`` as it was before the compiled kernels (issue 14), kept verbatim
as the reference that ``tests/test_kernels.py`` checks ``workers.cooc`` against.
"""

# ruff: noqa
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from workers.decay import DecayClock
from workers.models import Observation

_EMPTY_KEYS = np.zeros(0, dtype=np.int32)
_EMPTY_VALS = np.zeros(0, dtype=np.float64)
Delta = tuple[int, int, float, float]  # (from item, to item, amount, ts)
History = Sequence[tuple[int, float, float]]  # (item, ts, weight), most recent first


class CoOccurrence:
    """Directed, decayed co-counts ``C[a][b]``: how often ``b`` was watched shortly after ``a``.

    Parameters
    ----------
    window
        How many of the user's most recent items a new item co-counts with.
    topk
        Neighbours kept per item (the cap that bounds memory).
    half_life_s
        Half-life of the counts, in seconds of stream time.
    position_decay
        Weight multiplier per step back in the user's history.
    gap_half_life_s
        Items watched far apart in time are weaker evidence: the pair weight halves (down to
        half its value) per this many seconds between the two events.
    backward
        Weight of the reverse direction (``a`` after ``b``) relative to the forward one.
    """

    def __init__(
        self,
        window: int = 10,
        topk: int = 100,
        half_life_s: float = 14 * 86400.0,
        position_decay: float = 0.8,
        gap_half_life_s: float = 6 * 3600.0,
        backward: float = 0.5,
        shrink: float = 1.0,
    ) -> None:
        self.window = window
        self.topk = topk
        self.position_decay = position_decay
        self.gap_half_life_s = gap_half_life_s
        self.backward = backward
        self.shrink = shrink
        self.clock = DecayClock(half_life_s)
        self._nb: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # a -> (sorted b, counts)
        self._total = np.zeros(0, dtype=np.float64)
        self._last_ts: float | None = None

    # -- learning ---------------------------------------------------------------------------
    def deltas_one(self, obs: Observation) -> list[Delta]:
        """Co-count increments caused by one positive event (pure: reads no state).

        ``obs.history`` is the user's positive items, most recent first, as
        ``(item, ts, weight)``, not yet including this event.
        """
        history, item, ts, weight = obs.history, obs.item, obs.ts, obs.weight
        if weight <= 0:
            return []
        out: list[Delta] = []
        for pos, (prev, prev_ts, prev_w) in enumerate(history[: self.window]):
            if prev == item:
                continue
            gap = max(0.0, ts - prev_ts)
            gap_w = 0.5 + 0.5 * 2.0 ** (-gap / self.gap_half_life_s)
            w = min(weight, prev_w) * self.position_decay**pos * gap_w
            out.append((prev, item, w, ts))
            if self.backward > 0:
                out.append((item, prev, w * self.backward, ts))
        return out

    def apply_many(self, deltas: Iterable[Delta]) -> None:
        """Add co-count increments (the item-side step); negative amounts subtract.

        An entry whose count falls to (about) zero is removed, so subtracting exactly what was
        added leaves no trace. Increments are summed per row first, then merged into each row's
        arrays in one step.
        """
        pending: dict[int, dict[int, float]] = {}
        for a, b, amount, ts in deltas:
            if self.clock.needs_rebase(ts):
                self._merge_all(pending)
                pending = {}
                self._rebase(ts)
            inc = amount * self.clock.factor(ts)
            if self._last_ts is None or ts > self._last_ts:
                self._last_ts = ts
            row = pending.get(a)
            if row is None:
                row = pending[a] = {}
            row[b] = row.get(b, 0.0) + inc
            if a >= len(self._total):
                total = np.zeros(max(a + 1, 2 * len(self._total), 64), dtype=np.float64)
                total[: len(self._total)] = self._total
                self._total = total
            self._total[a] = max(0.0, self._total[a] + inc)
        self._merge_all(pending)

    def _merge_all(self, pending: dict[int, dict[int, float]]) -> None:
        for a, incs in pending.items():
            self._merge(a, incs)

    def _merge(self, a: int, incs: dict[int, float]) -> None:
        """Add ``incs`` (neighbour -> increment) to row ``a``; drop entries at about zero."""
        row = self._nb.get(a)
        if row is not None and len(incs) == 1:
            # The common case (a recent item gains one neighbour count): scalar numpy access
            # costs a fraction of the general merge below.
            ((b, inc),) = incs.items()
            keys, vals = row
            p = int(keys.searchsorted(b))
            tol1 = 1e-12 * max(1.0, abs(inc))
            if p < len(keys) and keys[p] == b:
                v = float(vals[p]) + inc
                if v > tol1:
                    vals[p] = v
                    return
            elif inc > tol1:
                n = len(keys)
                nk = np.empty(n + 1, dtype=np.int32)
                nv = np.empty(n + 1, dtype=np.float64)
                nk[:p], nk[p], nk[p + 1 :] = keys[:p], b, keys[p:]
                nv[:p], nv[p], nv[p + 1 :] = vals[:p], inc, vals[p:]
                if n + 1 > 2 * self.topk:
                    top = np.sort(np.argpartition(-nv, self.topk - 1)[: self.topk])
                    nk, nv = nk[top], nv[top]
                self._nb[a] = (nk, nv)
                return
            else:
                return  # subtracting from an entry that is not there: nothing to remove
        bs = np.fromiter(incs.keys(), dtype=np.int64, count=len(incs))
        add = np.fromiter(incs.values(), dtype=np.float64, count=len(incs))
        tol = 1e-12 * np.maximum(1.0, np.abs(add))
        if row is None:
            keys, vals = _EMPTY_KEYS, _EMPTY_VALS
        else:
            keys, vals = row
        pos = np.searchsorted(keys, bs)
        found = pos < len(keys)
        found[found] = keys[pos[found]] == bs[found]
        drop = np.zeros(0, dtype=np.int64)
        if found.any():
            p = pos[found]
            vals = vals.copy() if row is None else vals
            vals[p] += add[found]
            drop = p[vals[p] <= tol[found]]
        new = ~found & (add > tol)
        if new.any() or len(drop):
            keep = np.ones(len(keys), dtype=bool)
            keep[drop] = False
            keys = np.concatenate([keys[keep], bs[new].astype(np.int32)])
            vals = np.concatenate([vals[keep], add[new]])
            if len(keys) > 2 * self.topk:
                top = np.argpartition(-vals, self.topk - 1)[: self.topk]
                keys, vals = keys[top], vals[top]
            order = np.argsort(keys, kind="stable")
            keys, vals = keys[order], vals[order]
        if len(keys):
            self._nb[a] = (keys, vals)
        else:
            self._nb.pop(a, None)

    def learn_one(self, obs: Observation) -> None:
        self.apply_many(self.deltas_one(obs))

    def forget_user(self, user: Any) -> bool:
        """Holds nothing per user: a user's co-counts leave as subtracting deltas instead."""
        return False

    def _rebase(self, ts: float) -> None:
        scale = self.clock.rebase(ts)
        for _keys, vals in self._nb.values():
            vals *= scale
        self._total *= scale

    # -- scoring (never allocates state) ----------------------------------------------------
    def _row(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices and normalised scores ``C[a][b] / (sqrt(T[a] T[b]) + shrink)``."""
        row = self._nb.get(item)
        if row is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        keys, vals = row[0].astype(np.int64), row[1]
        tb = np.where(
            keys < len(self._total), self._total[np.minimum(keys, len(self._total) - 1)], vals
        )
        tb = np.maximum(tb, vals)
        shrink = self.shrink * (self.clock.factor(self._last_ts) if self._last_ts else 1.0)
        return keys, vals / (np.sqrt(self._total[item] * tb) + shrink)

    def score_many(self, query: Observation, items: np.ndarray) -> np.ndarray:
        """``score_history`` of the query's history, read at ``items`` (0 where none)."""
        keys, scores = self.score_history_arrays(query.history)
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros(len(items), dtype=np.float64)
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
            hit = keys[pos] == items
            out[hit] = scores[pos[hit]]
        return out

    def neighbours(self, item: int) -> dict[int, float]:
        """Normalised neighbour scores of one item (see ``_row``)."""
        keys, scores = self._row(item)
        return dict(zip(keys.tolist(), scores.tolist(), strict=True))

    def score_history(self, history: History, limit: int | None = None) -> dict[int, float]:
        """Candidate scores from a user's recent items: recency-weighted sum of neighbour scores."""
        keys, scores = self.score_history_arrays(history)
        if limit is not None and len(keys) > limit:
            top = np.argpartition(-scores, limit - 1)[:limit]
            keys, scores = keys[top], scores[top]
        return dict(zip(keys.tolist(), scores.tolist(), strict=True))

    def score_history_arrays(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        """``score_history`` as (items, scores) arrays, items sorted ascending.

        The rows of all history items are normalised in one numpy pass (``_row``'s formula),
        which is most of the cost of co-occurrence per ranked event.
        """
        rows, srcs, mult = [], [], []
        for pos, (prev, _ts, w) in enumerate(history[: self.window]):
            row = self._nb.get(prev)
            if row is not None:
                rows.append(row)
                srcs.append(prev)
                mult.append(self.position_decay**pos * min(w, 3.0))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        lens = [len(r[0]) for r in rows]
        keys = np.concatenate([r[0] for r in rows]).astype(np.int64)
        vals = np.concatenate([r[1] for r in rows])
        total = self._total
        tb = np.where(keys < len(total), total[np.minimum(keys, len(total) - 1)], vals)
        tb = np.maximum(tb, vals)
        ta = np.repeat(total[np.asarray(srcs, dtype=np.int64)], lens)
        shrink = self.shrink * (self.clock.factor(self._last_ts) if self._last_ts else 1.0)
        scores = vals / (np.sqrt(ta * tb) + shrink) * np.repeat(np.asarray(mult), lens)
        if len(rows) == 1:
            return keys, scores  # a row's keys are sorted already
        uniq, inv = np.unique(keys, return_inverse=True)
        return uniq, np.bincount(inv, weights=scores, minlength=len(uniq))

    def __len__(self) -> int:
        return len(self._nb)

    def count(self, a: int, b: int, ts: float) -> float:
        """The decayed co-count ``C[a][b]`` as seen at ``ts`` (for tests and inspection)."""
        row = self._nb.get(a)
        if row is None:
            return 0.0
        keys, vals = row
        pos = int(np.searchsorted(keys, b))
        hit = pos < len(keys) and int(keys[pos]) == b
        return float(vals[pos]) * self.clock.deflate(ts) if hit else 0.0

    # -- snapshots --------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "params": {
                "window": self.window,
                "topk": self.topk,
                "position_decay": self.position_decay,
                "gap_half_life_s": self.gap_half_life_s,
                "backward": self.backward,
                "shrink": self.shrink,
            },
            "clock": self.clock.to_state(),
            "nb": {
                a: dict(zip(keys.tolist(), vals.tolist(), strict=True))
                for a, (keys, vals) in self._nb.items()
            },
            "total": self._total.copy(),
            "last_ts": self._last_ts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CoOccurrence:
        obj = cls(**state["params"], half_life_s=state["clock"]["half_life_s"])
        obj.clock = DecayClock.from_state(state["clock"])
        for a, row in state["nb"].items():
            if row:
                keys = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
                vals = np.fromiter(row.values(), dtype=np.float64, count=len(row))
                order = np.argsort(keys, kind="stable")
                obj._nb[int(a)] = (keys[order].astype(np.int32), vals[order])
        obj._total = np.array(state["total"], dtype=np.float64)
        obj._last_ts = state["last_ts"]
        return obj
