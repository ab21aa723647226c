"""Incremental, weighted, time-decayed item co-occurrence with a bounded neighbour list per item.

Users binge: the next video is best predicted by the last few watched, so a new positive event
co-counts with the user's recent items only, weighted by how recent each one is (position and
time gap). Counts decay with a half-life so that yesterday's binge outweighs last month's, and
each item keeps only its ``topk`` strongest neighbours, so memory is bounded by
``items * 2 * topk`` entries. A row is a slice of two arena arrays (neighbour ids, sorted, as
int32 and counts as float64, 12 bytes an entry) rather than a dict (about 100 bytes an entry):
the rows are most of the item state, and the compiled kernels that score and update them
(``workers.kernels``) read one arena, not a dict of small arrays, in one call per event.

The learning step is split in two (``workers.models.OnlineModel``): ``deltas_one``
is a pure function of one user's history (the user-side step), ``apply_many`` adds deltas to the
global counts (the item-side step). Counts are additive, so deltas commute: applying the same
deltas in any order gives the same counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from workers import kernels
from workers.decay import DecayClock
from workers.models import Observation

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
        kernels.warm()  # load the compiled kernels at start, not on the first event
        # the rows, in one arena (see ``workers.kernels``): row a is keys/vals[start[a]:+length[a]]
        self._keys = np.zeros(0, dtype=np.int32)
        self._vals = np.zeros(0, dtype=np.float64)
        self._start = np.zeros(0, dtype=np.int64)
        self._length = np.zeros(0, dtype=np.int32)
        self._room = np.zeros(0, dtype=np.int32)
        self._used = 0  # arena entries handed out
        self._dead = 0  # of which left behind by rows that moved
        self._n_rows = 0  # non-empty rows
        self._acc = np.zeros(0, dtype=np.float64)  # scoring scratch, zero between calls
        self._mark = np.zeros(0, dtype=np.uint8)
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
        added leaves no trace. Increments are summed per (row, neighbour) first, then merged
        into the rows by one compiled call (``workers.kernels.cooc_merge``).
        """
        rows: list[int] = []
        bs: list[int] = []
        incs: list[float] = []
        clock = self.clock
        at, factor = None, 1.0  # an event's deltas share one time: one clock reading for them
        for a, b, amount, ts in deltas:
            if ts != at:
                if clock.needs_rebase(ts):
                    self._merge_all(rows, bs, incs)
                    rows, bs, incs = [], [], []
                    self._rebase(ts)
                at, factor = ts, clock.factor(ts)
                if self._last_ts is None or ts > self._last_ts:
                    self._last_ts = ts
            rows.append(a)
            bs.append(b)
            incs.append(amount * factor)
        self._merge_all(rows, bs, incs)

    def _merge_all(self, rows: list[int], bs: list[int], incs: list[float]) -> None:
        if not rows:
            return
        a = np.array(rows, dtype=np.int64)
        b = np.array(bs, dtype=np.int64)
        self._grow_rows(int(max(a.max(), b.max())) + 1)
        self._reserve(len(a) * 2 * self.topk)
        used, dead, d_rows = kernels.cooc_merge(
            a,
            b,
            np.array(incs, dtype=np.float64),
            np.lexsort((b, a)),
            self._total,
            self._start,
            self._length,
            self._room,
            self._keys,
            self._vals,
            self._used,
            self.topk,
        )
        self._used = int(used)
        self._dead += int(dead)
        self._n_rows += int(d_rows)

    def _grow_rows(self, n: int) -> None:
        """Make the per-row arrays (and the totals) cover ids below ``n``."""
        if n > len(self._start):
            cap = max(n, 2 * len(self._start), 64)
            self._start = _grown(self._start, cap)
            self._length = _grown(self._length, cap)
            self._room = _grown(self._room, cap)
        if n > len(self._total):
            self._total = _grown(self._total, max(n, 2 * len(self._total), 64))

    def _reserve(self, n: int) -> None:
        """Room for ``n`` more entries at the end of the arena: compact or grow it."""
        if self._used + n <= len(self._keys):
            return
        live = self._used - self._dead
        # compact once a fifth is dead, else grow by half: the live arena stays within about
        # twice its entries (rows reserve up to twice their length), amortised O(1) a move
        base = live if self._dead > live // 4 else self._used
        cap = max((3 * (base + n)) // 2, 1024)
        self._keys, self._vals, used = kernels.cooc_compact(
            self._start, self._length, self._room, self._keys, self._vals, cap
        )
        self._used, self._dead = int(used), 0

    def _get(self, a: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Row ``a`` as (neighbour ids ascending, counts) views, or None when empty."""
        if a >= len(self._length) or self._length[a] == 0:
            return None
        s0 = int(self._start[a])
        e = s0 + int(self._length[a])
        return self._keys[s0:e], self._vals[s0:e]

    def learn_one(self, obs: Observation) -> None:
        self.apply_many(self.deltas_one(obs))

    def forget_user(self, user: Any) -> bool:
        """Holds nothing per user: a user's co-counts leave as subtracting deltas instead."""
        return False

    def _rebase(self, ts: float) -> None:
        scale = self.clock.rebase(ts)
        self._vals[: self._used] *= scale
        self._total *= scale

    # -- scoring (never allocates state) ----------------------------------------------------
    def _row(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbour indices and normalised scores ``C[a][b] / (sqrt(T[a] T[b]) + shrink)``."""
        row = self._get(item)
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

        One compiled pass over the rows of the history's items (``_row``'s formula), which is
        most of the cost of co-occurrence per ranked event.
        """
        length = self._length
        n_len = len(length)
        hist: list[int] = []
        mult: list[float] = []
        for pos, (prev, _ts, w) in enumerate(history[: self.window]):
            if prev < n_len and length[prev]:
                hist.append(prev)
                mult.append(self.position_decay**pos * min(w, 3.0))
        if not hist:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        if len(self._acc) < n_len:  # neighbour ids are below the number of rows
            self._acc = np.zeros(len(self._start), dtype=np.float64)
            self._mark = np.zeros(len(self._start), dtype=np.uint8)
        shrink = self.shrink * (self.clock.factor(self._last_ts) if self._last_ts else 1.0)
        return kernels.cooc_score(
            np.array(hist, dtype=np.int64),
            np.array(mult, dtype=np.float64),
            self._start,
            length,
            self._keys,
            self._vals,
            self._total,
            shrink,
            self._acc,
            self._mark,
        )

    def kernel_args(self) -> tuple[Any, ...]:
        """What ``kernels.cooc_best`` needs after the history, then the window: the arena, read
        as ``score_history_arrays`` reads it (for ``kernels.reason_sources``)."""
        shrink = self.shrink * (self.clock.factor(self._last_ts) if self._last_ts else 1.0)
        return (
            self.position_decay,
            self._start,
            self._length,
            self._keys,
            self._vals,
            self._total,
            shrink,
            self.window,
        )

    def best_history(self, history: History, targets: np.ndarray) -> np.ndarray:
        """For each of ``targets``, the position in ``history`` of the item that gave it the
        most of its ``score_history_arrays`` score (-1: none): "because you watched X"."""
        window = history[: self.window]
        if not window or not len(targets):
            return np.full(len(targets), -1, dtype=np.int64)
        return kernels.cooc_best(
            np.array(window, dtype=np.float64),  # (item, ts, weight) rows
            *self.kernel_args()[:-1],
            np.asarray(targets, dtype=np.int64),
        )

    def __len__(self) -> int:
        return self._n_rows

    def count(self, a: int, b: int, ts: float) -> float:
        """The decayed co-count ``C[a][b]`` as seen at ``ts`` (for tests and inspection)."""
        row = self._get(a)
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
                a: dict(zip(row[0].tolist(), row[1].tolist(), strict=True))
                for a in np.flatnonzero(self._length).tolist()
                if (row := self._get(a)) is not None
            },
            "total": self._total.copy(),
            "last_ts": self._last_ts,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CoOccurrence:
        obj = cls(**state["params"], half_life_s=state["clock"]["half_life_s"])
        obj.clock = DecayClock.from_state(state["clock"])
        rows = {int(a): row for a, row in state["nb"].items() if row}
        top = max((max(a, *row) for a, row in rows.items()), default=-1)
        total = np.asarray(state["total"], dtype=np.float64)
        obj._grow_rows(max(top + 1, len(total)))
        obj._total[: len(total)] = total
        used = sum(len(row) for row in rows.values())
        obj._keys = np.zeros(used, dtype=np.int32)
        obj._vals = np.zeros(used, dtype=np.float64)
        at = 0
        for a in sorted(rows):  # packed, no room to grow: a row that grows moves to the end
            row = rows[a]
            keys = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            vals = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            order = np.argsort(keys, kind="stable")
            n = len(row)
            obj._keys[at : at + n] = keys[order]
            obj._vals[at : at + n] = vals[order]
            obj._start[a], obj._length[a], obj._room[a] = at, n, n
            at += n
        obj._used = at
        obj._n_rows = len(rows)
        obj._last_ts = state["last_ts"]
        return obj


def _grown(a: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=a.dtype)
    out[: len(a)] = a
    return out
