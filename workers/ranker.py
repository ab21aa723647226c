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

FEATURES = ("cooc", "content", "mf", "popular", "recent", "fresh_content", "pop_content")
SOURCES = ("cooc", "content", "mf", "popular")

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
}


class Fusion:
    """Linear fusion weights, learned online with pairwise logistic (BPR-style) updates."""

    def __init__(self, lr: float = 0.02, reg: float = 1e-3, enabled: Sequence[str] = FEATURES):
        self.lr = lr
        self.reg = reg
        self.mask = np.array([f in enabled for f in FEATURES], dtype=np.float32)
        self.init = np.array([INITIAL_WEIGHTS[f] for f in FEATURES], dtype=np.float32) * self.mask
        self.w = self.init.copy()
        self.updates = 0

    def score(self, feats: np.ndarray) -> np.ndarray:
        return feats @ self.w

    def gradient(self, pos: np.ndarray, negs: np.ndarray) -> np.ndarray:
        """Weight update that would make ``pos`` outrank each row of ``negs`` (pure)."""
        if len(negs) == 0 or self.lr == 0:
            return np.zeros_like(self.w)
        diff = pos[None, :] - negs
        x = diff @ self.w
        g = 1.0 / (1.0 + np.exp(np.clip(x, -30, 30)))
        grad = (g[:, None] * diff).mean(axis=0) - self.reg * (self.w - self.init)
        return (self.lr * grad * self.mask).astype(np.float32)

    def apply(self, delta: np.ndarray) -> None:
        self.w += delta
        self.updates += 1

    def to_state(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "reg": self.reg,
            "mask": self.mask.copy(),
            "w": self.w.copy(),
            "updates": self.updates,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Fusion:
        enabled = [f for f, m in zip(FEATURES, state["mask"], strict=True) if m]
        obj = cls(state["lr"], state["reg"], enabled)
        obj.w = np.array(state["w"], dtype=np.float32)
        obj.updates = state["updates"]
        return obj

    def as_dict(self) -> dict[str, float]:
        return {f: round(float(w), 4) for f, w in zip(FEATURES, self.w, strict=True)}


@dataclass
class Ranked:
    """A ranked list: dense indices, fused scores and the per-source scores of each item."""

    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray  # (n, len(SOURCES))
    fresh: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass(frozen=True)
class RankerConfig:
    sources: tuple[str, ...] = SOURCES
    n_cooc: int = 200
    n_content: int = 50
    n_fresh: int = 30
    n_mf: int = 50
    n_popular: int = 100
    fresh_s: float = 7 * 86400.0
    recent_half_life_s: float = 3 * 86400.0
    fresh_slots: int = 2
    slot_window: int = 10
    fresh_min_content: float = 0.35
    cold_views: float = 3.0
    profile_len: int = 20
    profile_decay: float = 0.7


def content_profile(
    vectors: np.ndarray,
    has_content: np.ndarray,
    history: Sequence[tuple[int, float, float]],
    length: int,
    decay: float,
) -> np.ndarray | None:
    """Recency-weighted mean of the content vectors of a user's recent items (L2-normalised)."""
    idx = [h[0] for h in history[:length]]
    if not idx:
        return None
    w = np.array(
        [decay**p * min(h[2], 3.0) for p, h in enumerate(history[:length])], dtype=np.float32
    )
    w *= has_content[idx]
    if not np.any(w):
        return None
    prof = w @ vectors[idx]
    norm = float(np.linalg.norm(prof))
    return prof / norm if norm > 0 else None


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
) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) of ``items`` for one user at time ``now``.

    ``cooc`` is the user's co-occurrence scores as (sorted items, scores).
    """
    n = len(items)
    f = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return f
    keys, vals = cooc
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
        f[:, 0] = np.where(keys[pos] == items, vals[pos], 0.0)
    if profile is not None:
        f[:, 1] = vectors[items] @ profile
    f[:, 2] = np.tanh(mf)
    f[:, 3] = popular
    age = np.maximum(0.0, now - published_at[items])
    f[:, 4] = np.exp2(-age / cfg.recent_half_life_s)
    fresh = age < cfg.fresh_s
    f[:, 5] = fresh * np.maximum(f[:, 1], 0.0)
    f[:, 6] = popular * np.maximum(f[:, 1], 0.0)
    return f


def sources_of(feats: np.ndarray) -> np.ndarray:
    """Per-source scores published with each item: cooc, content, mf, popular."""
    return feats[:, [0, 1, 2, 3]]


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
    order = np.argsort(-scores, kind="stable")
    top = list(order[:k])
    if cfg.fresh_slots > 0 and "content" in cfg.sources:
        window = min(cfg.slot_window, k)
        have = sum(bool(fresh[i]) for i in top[:window])
        if have < cfg.fresh_slots:
            in_top = set(top[:window])
            eligible = order[fresh[order] & (feats[order, 1] >= cfg.fresh_min_content)]
            extra = [int(i) for i in eligible if i not in in_top][: cfg.fresh_slots - have]
            if extra:
                rest = [i for i in top if i not in extra]
                head = rest[: window - len(extra)]
                top = head + extra + [i for i in rest if i not in head]
                top = top[:k]
    top_arr = np.array(top, dtype=np.int64)
    return Ranked(items[top_arr], scores[top_arr], sources_of(feats[top_arr]), fresh[top_arr])
