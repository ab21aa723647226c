"""Request-time rules of ``GET /users/{id}/recommendations``: filters, a cap per creator, and
diversity by maximal marginal relevance (MMR) over the videos' content vectors.

Workers publish ``VIDREC_ENGINE_K`` items a list (20 by default) while a request asks for
``k`` (10 by default), so the filters have spare items to drop. When they leave fewer than
``k`` (capped at the list's length), the rest is filled from trending videos that pass the same
rules, each marked with the reason ``trending``. Pure: no I/O, tested without a server.

A video whose metadata the store has not seen yet (its ``videos`` record is still unread)
passes ``exclude_categories`` and ``max_per_creator`` (nothing says it breaks them) and fails
``language`` and ``max_age_days`` (nothing says it meets them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class VideoMeta:
    """What the rules and the responses need of a video (from the ``videos`` topic)."""

    video_id: str
    title: str = ""
    category: str = ""
    language: str = ""
    creator_id: str | None = None
    published_at: float | None = None  # epoch seconds


@dataclass(frozen=True, slots=True)
class Rules:
    """One request's rules; the defaults change nothing.

    Raises ``ValueError`` with a one-line reason for a value out of range.
    """

    exclude_categories: frozenset[str] = field(default_factory=frozenset)
    language: str | None = None
    max_age_days: float | None = None
    max_per_creator: int | None = None
    diversity: float = 0.0  # MMR trade-off: 0 = relevance only (off), 1 = dissimilarity only

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0 or math.isnan(self.diversity):
            raise ValueError(f"diversity must be in [0, 1], got {self.diversity}")
        if self.max_per_creator is not None and self.max_per_creator < 1:
            raise ValueError(f"max_per_creator must be at least 1, got {self.max_per_creator}")
        if self.max_age_days is not None and not self.max_age_days > 0:
            raise ValueError(f"max_age_days must be positive, got {self.max_age_days}")

    def admits(self, meta: VideoMeta | None, now: float) -> bool:
        """Whether one video passes the filters (the per-creator cap is counted elsewhere)."""
        if meta is None:
            return self.language is None and self.max_age_days is None
        if self.exclude_categories and meta.category in self.exclude_categories:
            return False
        if self.language is not None and meta.language != self.language:
            return False
        if self.max_age_days is not None and (
            meta.published_at is None or now - meta.published_at > self.max_age_days * DAY_S
        ):
            return False
        return True


Item = dict[str, Any]  # {"video_id", "score", "sources", "reason"?}: a list's item as stored
VectorsOf = Callable[[Sequence[str]], np.ndarray | None]  # (n, dim) rows, zeros where unknown


@dataclass(slots=True)
class _Picker:
    """What is already in the response: ids, and items per creator (for the cap)."""

    rules: Rules
    meta: Mapping[str, VideoMeta]
    now: float
    ids: set[str] = field(default_factory=set)
    per_creator: dict[str, int] = field(default_factory=dict)

    def candidates(self, items: Sequence[Item]) -> list[Item]:
        get, admits, now = self.meta.get, self.rules.admits, self.now
        return [
            it
            for it in items
            if it["video_id"] not in self.ids and admits(get(it["video_id"]), now)
        ]

    def creator(self, item: Item) -> str | None:
        m = self.meta.get(item["video_id"])
        return m.creator_id if m is not None else None

    def fits(self, item: Item) -> bool:
        cap = self.rules.max_per_creator
        if cap is None:
            return True
        c = self.creator(item)
        return c is None or self.per_creator.get(c, 0) < cap

    def take(self, item: Item, out: list[Item]) -> None:
        out.append(item)
        self.ids.add(item["video_id"])
        c = self.creator(item)
        if c is not None:
            self.per_creator[c] = self.per_creator.get(c, 0) + 1


def _greedy(picker: _Picker, cands: list[Item], k: int, out: list[Item]) -> None:
    for it in cands:
        if len(out) >= k:
            return
        if picker.fits(it):
            picker.take(it, out)


def _mmr(
    picker: _Picker,
    cands: list[Item],
    k: int,
    out: list[Item],
    vectors_of: VectorsOf,
    sims_of: Callable[[list[Item]], np.ndarray | None] | None = None,
) -> None:
    """Greedy MMR: each step takes the item maximising
    ``(1 - d) * relevance - d * max cosine to what is already taken`` (Carbonell & Goldstein),
    relevance being the list's score as a share of the best (min-max scaled when some score
    is not positive). Items already in ``out`` count as taken.
    """
    d = picker.rules.diversity
    n = len(cands)
    # (candidates, candidates + already taken); a list of 20: plain Python beats numpy calls
    sims: list[list[float]]
    if sims_of is not None and not out and (got := sims_of(cands)) is not None:
        sims = got.tolist()
    else:
        vecs = vectors_of([*(it["video_id"] for it in cands), *(it["video_id"] for it in out)])
        if vecs is None or not n:
            _greedy(picker, cands, k, out)
            return
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs = np.divide(vecs, norms, out=np.zeros_like(vecs), where=norms > 0)
        sims = (vecs[:n] @ vecs.T).tolist()
    scores = [float(it["score"]) for it in cands]
    lo, hi = min(scores), max(scores)
    if lo > 0:  # the engine's scores: a share of the best one
        rel = [x / hi for x in scores]
    else:
        rel = [(x - lo) / (hi - lo) if hi > lo else 1.0 for x in scores]
    # cosine to the closest item taken so far, per candidate (0 while nothing is taken)
    closest = [max(0.0, *row[n:]) for row in sims] if out else [0.0] * n
    gain = [(1.0 - d) * r for r in rel]
    free = list(range(n))
    while len(out) < k and free:
        best, i = -math.inf, free[0]
        for j in free:
            v = gain[j] - d * closest[j]
            if v > best:
                best, i = v, j
        free.remove(i)
        if not picker.fits(cands[i]):
            continue
        picker.take(cands[i], out)
        for j in free:
            s = sims[j][i]
            if s > closest[j]:
                closest[j] = s


def apply_rules(
    items: Sequence[Item],
    k: int,
    rules: Rules,
    meta: Mapping[str, VideoMeta],
    vectors_of: VectorsOf,
    now: float,
    fill: Sequence[Item] = (),
    sims: np.ndarray | None = None,
) -> tuple[list[Item], int]:
    """The first ``k`` items of ``items`` that pass ``rules``, then items of ``fill`` (trending,
    already marked) to make up ``k``; returns ``(items, how many came from fill)``.

    ``items`` are in the list's order (best first). With ``rules.diversity`` > 0 the order is
    MMR's over the admitted items; the fill keeps trending order but still avoids creators at
    their cap. ``sims``: the cosine similarities among ``items`` when the caller keeps them
    (``Store.list_sims``), so diversity needs no vectors per request.
    """
    picker = _Picker(rules, meta, now)
    out: list[Item] = []
    cands = picker.candidates(items)
    if rules.diversity > 0:
        sims_of = None
        if sims is not None and sims.shape == (len(items), len(items)):
            at = {it["video_id"]: i for i, it in enumerate(items)}

            def sims_of(cs: list[Item]) -> np.ndarray:
                pos = [at[it["video_id"]] for it in cs]
                return sims[np.ix_(pos, pos)]

        _mmr(picker, cands, k, out, vectors_of, sims_of)
    else:
        _greedy(picker, cands, k, out)
    n_list = len(out)
    if len(out) < k and fill:
        _greedy(picker, picker.candidates(fill), k, out)
    return out, len(out) - n_list
