"""Hybrid ranking: candidates from every source, per-source features, one fused score.

Fusion is a linear score over a few per-item features whose weights are learned online,
pairwise, from what the user does next: the item the user picked should have outscored the
items we had put at the top of their list. Features are absolute per item (not normalised
within one list), so the same item gets the same features whether it is scored inside a ranking
or on its own when its weights are updated.

Content similarity looks weak next to behaviour scores, so a plain blend tuned on overall hit
rate would rank brand-new videos out of every list. Two things keep them in: a feature that
only fires for fresh items (``fresh_content``), and ``fresh_slots`` places of the top list kept
for the best fresh videos whose content matches the user, when any do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import linear_model, optim, preprocessing

from workers import kernels

FEATURES = (
    "cooc",
    "content",
    "mf",
    "popular",
    "recent",
    "fresh_content",
    "pop_content",
    "seq",
    # metadata known at upload (issue 16): the user's decayed share of events on the item's
    # creator, in its language, in its format (orientation x resolution tier), and how well its
    # length fits the lengths the user watches; 0 where the item or the user has none
    "creator",
    "language",
    "duration",
    "format",
    # the thumbnail: cosine of the item's visual descriptor with the user's visual profile
    "visual",
)
# the metadata columns, in FEATURES order (``featurise``'s ``meta`` argument)
META_FEATURES = ("creator", "language", "duration", "format")
SOURCES = ("cooc", "content", "mf", "popular", "seq")
_NONE = np.zeros(0, dtype=np.float32)  # a profile or sequential score that is not there

# Starting weights: behaviour first, content as a tie-breaker, freshness as a nudge. Learning
# moves them; these only matter for the first few hundred events.
INITIAL_WEIGHTS = {
    "cooc": 2.0,
    "content": 1.0,
    "mf": 0.3,
    "popular": 1.0,
    "recent": 0.5,
    "fresh_content": 1.0,
    "pop_content": 1.0,
    "seq": 0.3,  # the sequential model's log-lift (0: no better than chance)
    "creator": 1.0,
    "language": 0.5,
    "duration": 0.3,
    "format": 0.2,
    "visual": 0.3,
}


class Fusion:
    """Linear fusion weights, learned online by river from which item the user picked next.

    Each training pair is (the item the user picked, an item we had put at the top of their
    list instead). Features are put on one scale by river's online ``StandardScaler`` and the
    pair's difference is learned by river's ``LogisticRegression`` (pairwise logistic, BPR's
    loss), with L2 and gradient clipping, so that no source's weight can run away because its
    raw scale drifts (co-occurrence sums grow with a user's history; popularity shrinks as the
    catalogue grows). Ranking only needs ``feats @ (w / std)``, one numpy product, so river's
    dict-per-row scoring is never on the hot path.

    Until ``warmup`` candidate rows have been seen the scaler knows no spread, so the starting
    weights (``INITIAL_WEIGHTS``, in raw units) rank; then river's weights start from exactly
    those (``w = prior * std``), so the list does not jump when learning begins.
    """

    def __init__(
        self,
        lr: float = 0.02,
        reg: float = 1e-3,
        enabled: Sequence[str] = FEATURES,
        warmup: int = 200,
    ) -> None:
        self.lr = lr
        self.reg = reg
        self.warmup = warmup
        self.mask = np.array([f in enabled for f in FEATURES], dtype=np.float32)
        self.init = np.array([INITIAL_WEIGHTS[f] for f in FEATURES], dtype=np.float32) * self.mask
        self.scaler = preprocessing.StandardScaler()
        self.model = self._new_model()
        self.started = False
        self.updates = 0
        self.w = self.init.copy()  # raw-unit weights: what ``score`` multiplies by

    def _new_model(self) -> linear_model.LogisticRegression:
        return linear_model.LogisticRegression(
            optimizer=optim.SGD(self.lr), l2=self.reg, intercept_lr=0.0, clip_gradient=1.0
        )

    def score(self, feats: np.ndarray) -> np.ndarray:
        return feats @ self.w

    def rows(self, pos: np.ndarray, negs: np.ndarray) -> list[list[float]]:
        """The training rows of one event (pure): the picked item's features, then the others'."""
        if len(negs) == 0 or self.lr == 0:
            return []
        return [pos.tolist(), *negs.tolist()]

    def learn_many(self, rows: Sequence[Sequence[float]]) -> None:
        """Learn from one event's rows (``rows[0]`` picked over each of ``rows[1:]``)."""
        if len(rows) < 2:
            return
        names = [f for f, m in zip(FEATURES, self.mask, strict=True) if m]
        cols = [i for i, m in enumerate(self.mask) if m]
        dicts = [{f: float(r[i]) for f, i in zip(names, cols, strict=True)} for r in rows]
        for d in dicts:
            self.scaler.learn_one(d)
        n = self.scaler.counts[names[0]] if names else 0
        if not self.started:
            if n < self.warmup:
                return
            std = self._std()
            for f, i in zip(names, cols, strict=True):
                self.model._weights[f] = float(self.init[i] * std[i])
            self.started = True
        pos = self.scaler.transform_one(dicts[0])
        for d in dicts[1:]:
            neg = self.scaler.transform_one(d)
            self.model.learn_one({f: pos[f] - neg[f] for f in names}, True)
        self.updates += 1
        self._refresh()

    def _std(self) -> np.ndarray:
        std = np.ones(len(FEATURES), dtype=np.float32)
        for i, f in enumerate(FEATURES):
            if self.mask[i] and self.scaler.counts.get(f, 0) > 1:
                std[i] = max(float(np.sqrt(self.scaler.vars[f])), 1e-6)
        return std

    def _refresh(self) -> None:
        weights = self.model.weights
        w = np.array([weights.get(f, 0.0) for f in FEATURES], dtype=np.float32)
        self.w = (w / self._std() * self.mask).astype(np.float32)

    def to_state(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "reg": self.reg,
            "warmup": self.warmup,
            "mask": self.mask.copy(),
            "started": self.started,
            "updates": self.updates,
            "weights": dict(self.model.weights),
            "w": self.w.copy(),  # raw-unit weights, as ranking uses them (derived; for reading)
            "scaler": {
                "counts": dict(self.scaler.counts),
                "means": dict(self.scaler.means),
                "vars": dict(self.scaler.vars),
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Fusion:
        # a snapshot from before a feature was added has a shorter mask: the new one is off
        enabled = [f for f, m in zip(FEATURES, state["mask"], strict=False) if m]
        obj = cls(state["lr"], state["reg"], enabled, state.get("warmup", 200))
        sc = state.get("scaler")
        if sc is not None:
            obj.scaler.counts.update(sc["counts"])
            obj.scaler.means.update(sc["means"])
            obj.scaler.vars.update(sc["vars"])
            for f, w in state["weights"].items():
                obj.model._weights[f] = w
            obj.started = state["started"]
            if obj.started:
                obj._refresh()
        obj.updates = state["updates"]
        return obj

    def as_dict(self) -> dict[str, float]:
        """Weights in raw feature units (what ranking multiplies by)."""
        return {f: round(float(w), 4) for f, w in zip(FEATURES, self.w, strict=True)}


@dataclass
class Ranked:
    """A ranked list: dense indices, fused scores and the per-source scores of each item."""

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray  # (n, len(SOURCES))
    fresh: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # the history it was ranked for, ``(item, ts, weight)`` most recent first (set by the
    # engine): the reasons of the published items name items of it
    history: list[tuple[int, float, float]] = field(default_factory=list)
    # each item's creator column (the user's share of events on its creator): its reason
    creator: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))


@dataclass(frozen=True)
class RankerConfig:
    sources: tuple[str, ...] = SOURCES
    n_cooc: int = 200
    n_content: int = 50
    n_fresh: int = 30
    n_mf: int = 50
    n_popular: int = 100
    n_seq: int = 50
    fresh_s: float = 7 * 86400.0
    recent_half_life_s: float = 3 * 86400.0
    fresh_slots: int = 2
    slot_window: int = 10
    fresh_min_content: float = 0.35
    cold_views: float = 3.0
    profile_len: int = 20
    profile_decay: float = 0.7


def profile_weights(
    history: Sequence[tuple[int, float, float]], length: int, decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """The items a user's profiles are made of (their ``length`` most recent) and each one's
    weight: ``decay`` per place back, times the event's weight capped at 3. The content and
    the visual profile weigh alike."""
    recent = history[:length]
    idx = np.array([h[0] for h in recent], dtype=np.int64)
    w = np.array([decay**p * min(h[2], 3.0) for p, h in enumerate(recent)], dtype=np.float32)
    return idx, w


def content_profile(
    vectors: np.ndarray,
    has_content: np.ndarray,
    history: Sequence[tuple[int, float, float]],
    length: int,
    decay: float,
) -> np.ndarray | None:
    """Recency-weighted mean of the content vectors of a user's recent items (L2-normalised)."""
    idx, w = profile_weights(history, length, decay)
    if not len(idx):
        return None
    w *= has_content[idx]
    if not np.any(w):
        return None
    prof = kernels.profile_of(idx, w, vectors)
    return prof if len(prof) else None


def featurise(
    items: np.ndarray,
    *,
    now: float,
    cooc: tuple[np.ndarray, np.ndarray],
    profile: np.ndarray | None,
    vectors: np.ndarray,
    published_at: np.ndarray,
    mf: np.ndarray,
    popular: np.ndarray,
    cfg: RankerConfig,
    seq: np.ndarray | None = None,
    meta: np.ndarray | None = None,
    visual: np.ndarray | None = None,
) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) of ``items`` for one user at time ``now``.

    ``cooc`` is the user's co-occurrence scores as (sorted items, scores); ``seq`` the
    sequential model's scores of ``items`` (None: the model is off); ``meta`` the
    ``META_FEATURES`` columns of ``items`` (n, 4) and ``visual`` their visual similarity (n,),
    None where off. The behaviour and text columns are one compiled pass
    (``workers.kernels.features``): in numpy it was a dozen calls over a few hundred rows,
    each costing more than its arithmetic.
    """
    keys, vals = cooc
    base = kernels.features(
        np.asarray(items, dtype=np.int64),
        np.asarray(keys, dtype=np.int64),
        np.asarray(vals, dtype=np.float64),
        _NONE if profile is None else np.asarray(profile, dtype=np.float32),
        vectors,
        published_at,
        np.asarray(mf, dtype=np.float32),
        np.asarray(popular, dtype=np.float32),
        _NONE if seq is None else np.asarray(seq, dtype=np.float32),
        float(now),
        float(cfg.recent_half_life_s),
        float(cfg.fresh_s),
    )
    out = np.zeros((len(base), len(FEATURES)), dtype=np.float32)
    out[:, : base.shape[1]] = base
    if meta is not None:
        out[:, _META_AT : _META_AT + len(META_FEATURES)] = meta
    if visual is not None:
        out[:, _VISUAL_AT] = visual
    return out


_META_AT = FEATURES.index(META_FEATURES[0])
CREATOR_AT = FEATURES.index("creator")
_VISUAL_AT = FEATURES.index("visual")


def sources_of(feats: np.ndarray) -> np.ndarray:
    """Per-source scores published with each item: cooc, content, mf, popular, seq."""
    return feats[:, [0, 1, 2, 3, 7]]


def fuse_and_rank(
    items: np.ndarray,
    feats: np.ndarray,
    fusion: Fusion,
    k: int,
    cfg: RankerConfig,
    fresh: np.ndarray,
) -> Ranked:
    """Order candidates by fused score, then keep ``fresh_slots`` places for cold videos.

    ``fresh`` marks the candidates that may take those places: young videos that almost nobody
    has watched, whose only way to a user is their content.
    """
    scores = fusion.score(feats)
    slots = cfg.fresh_slots if "content" in cfg.sources else 0
    top_arr = kernels.fused_order(
        scores,
        np.ascontiguousarray(feats[:, 1]),
        np.asarray(fresh, dtype=np.bool_),
        k,
        slots,
        min(cfg.slot_window, k),
        float(cfg.fresh_min_content),
    )
    return Ranked(
        items[top_arr],
        scores[top_arr],
        sources_of(feats[top_arr]),
        fresh[top_arr],
        creator=feats[top_arr, CREATOR_AT],
    )
