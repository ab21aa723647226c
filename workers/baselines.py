"""Reference recommenders kept apart from the engine, so a bug of the engine cannot flatter them.

Item-kNN, all-time popularity and an online matrix factorisation (river's ``FunkMF``) share no code
with ``workers.engine`` or its models (co-occurrence, factors, ranker, popularity): only the
message schemas and the evaluation protocol's list of positive event types. Each is driven by
``workers.embedded.drive`` exactly as the engine is: ``on_videos``, ``on_event`` (learn, then
return the user's fresh list; ``None`` for a duplicate event id), ``on_forget`` and ``recommend``.

Graded events are weighed the simplest way: every positive type (play, watch, complete, like,
share) is one positive, whatever its type; impressions, skips and dislikes are ignored. So item-kNN
sees binary (user, item) pairs, popularity counts positive events, and the MF learns y = 1 once per
positive event. Seen items (positively touched by the user) are never recommended; equal scores
are broken by all-time popularity, then by order of first appearance in the stream.

These are references for measuring, not production models: item-kNN holds a dense item x item
count matrix (two bytes a pair while there are fewer than 65,535 users).
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

from schemas import (
    SCHEMA_VERSION,
    ForgetUser,
    Recommendations,
    UserEvent,
    VideoPublished,
    recommended_items,
    utcnow,
)
from workers.evaluation import POSITIVE

_BIG = np.finfo(np.float64).max


class Baseline:
    """Item ids, per-user seen items, event-id dedup and top-k selection shared by the baselines.

    Parameters
    ----------
    k
        Items per published list.
    """

    name = "baseline"
    source = 3  # column of ``recommended_items``' sources row: (cooc, content, mf, popular)

    def __init__(self, k: int = 20) -> None:
        self.k = k
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.pop = np.zeros(0, dtype=np.int64)
        self.seen: dict[str, dict[int, None]] = {}  # distinct positives, least recent first
        self._event_ids: set[str] = set()
        self.n_events = 0

    # -- items ------------------------------------------------------------------------------
    def _item(self, video_id: str) -> int:
        i = self.index.get(video_id)
        if i is None:
            i = self.index[video_id] = len(self.ids)
            self.ids.append(video_id)
            if i >= len(self.pop):
                self._grow(max(64, int(len(self.pop) * 1.25) + 1))
        return i

    def _grow(self, cap: int) -> None:
        """Make room for ``cap`` items; subclasses grow their own arrays too."""
        self.pop = _resized(self.pop, cap)

    def on_videos(self, videos: Iterable[VideoPublished], vectors: Any = None) -> None:
        for v in videos:
            self._item(v.video_id)

    # -- events -----------------------------------------------------------------------------
    def on_event(self, event: UserEvent) -> Recommendations | None:
        """Learn from one event and return the user's fresh list; ``None`` for a duplicate."""
        t0 = time.perf_counter()
        if event.event_id in self._event_ids:
            return None
        self._event_ids.add(event.event_id)
        self.n_events += 1
        if event.type in POSITIVE:
            i = self._item(event.video_id)
            seen = self.seen.setdefault(event.user_id, {})
            first = i not in seen
            if not first:
                del seen[i]  # re-inserted below: most recent last
            self.learn_positive(event.user_id, i, first)
            seen[i] = None
            self.pop[i] += 1
        return self._message(event.user_id, event.event_id, t0)

    def learn_positive(self, user_id: str, item: int, first: bool) -> None:
        """Learn one positive event (``first``: the user's first on this item); before ``seen``
        and ``pop`` count it."""

    def on_forget(self, msg: ForgetUser) -> None:
        """Drop what is held about the user; item statistics keep what they learned."""
        self.seen.pop(msg.user_id, None)

    # -- ranking ----------------------------------------------------------------------------
    def scores(self, user_id: str) -> np.ndarray:
        """A score per known item for the user (higher first); must not create state."""
        return np.zeros(len(self.ids))

    def top(self, user_id: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` unseen items and their scores, ties by popularity then arrival."""
        s = np.asarray(self.scores(user_id), dtype=np.float64).copy()
        if not np.isfinite(s).all():  # a diverged model: its NaNs rank last, below no seen item
            s = np.nan_to_num(s, nan=-_BIG, posinf=_BIG, neginf=-_BIG)
        seen = self.seen.get(user_id)
        if seen:
            s[np.fromiter(seen, dtype=np.int64, count=len(seen))] = -np.inf
        k = min(k, len(s) - (len(seen) if seen else 0))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        part = np.argpartition(-s, k - 1)[:k]
        kth = s[part].min()
        above = np.flatnonzero(s > kth)
        tied = np.flatnonzero(s == kth)
        need = k - len(above)
        if len(tied) > need:
            tied = tied[np.lexsort((tied, -self.pop[tied]))[:need]]
        chosen = np.concatenate([above, tied])
        chosen = chosen[np.lexsort((chosen, -self.pop[chosen], -s[chosen]))]
        return chosen, s[chosen]

    def recommend(self, user_id: str, k: int | None = None) -> Recommendations:
        return self._message(user_id, None, time.perf_counter(), k)

    def _message(
        self, user_id: str, trigger: str | None, t0: float, k: int | None = None
    ) -> Recommendations:
        items, scores = self.top(user_id, k or self.k)
        col = self.source
        rows = [tuple(float(v) if c == col else 0.0 for c in range(4)) for v in scores]
        return Recommendations.model_construct(
            schema_version=SCHEMA_VERSION,
            kind="recommendations",
            user_id=user_id,
            items=recommended_items(
                [self.ids[i] for i in items], [round(float(v), 6) for v in scores], rows
            ),
            trigger_event_id=trigger,
            generated_at=utcnow(),
            latency_ms=round((time.perf_counter() - t0) * 1000.0, 3),
            model={"baseline": self.name, "events": str(self.n_events)},
        )


class Popularity(Baseline):
    """All-time count of positive events: the floor any personalised recommender must clear."""

    name = "popularity"
    source = 3

    def scores(self, user_id: str) -> np.ndarray:
        return self.pop[: len(self.ids)].astype(np.float64)


class ItemKNN(Baseline):
    """Plain item-kNN: cosine of binary co-occurrence, summed over the user's last items.

    Two items co-occur once per user who positively touched both (in any order, at any distance
    in time); their similarity is ``co(a, b) / sqrt(n_a n_b)``, ``n`` counting the distinct users
    of each item. A candidate's score sums its similarities to the user's ``last`` most recent
    distinct positive items. Counts are exact and unbounded: a reference, not a production model.
    """

    name = "item-knn"
    source = 0

    def __init__(self, k: int = 20, last: int = 5) -> None:
        self.last = last
        self.co = np.zeros((0, 0), dtype=np.uint16)
        self.users = np.zeros(0, dtype=np.float64)  # distinct users per item
        super().__init__(k)

    def _grow(self, cap: int) -> None:
        super()._grow(cap)
        self.users = _resized(self.users, cap)
        co = np.zeros((cap, cap), dtype=self.co.dtype)
        n = len(self.co)
        co[:n, :n] = self.co
        self.co = co

    def learn_positive(self, user_id: str, item: int, first: bool) -> None:
        if not first:
            return
        seen = self.seen.get(user_id)
        if seen:
            if len(self.seen) >= np.iinfo(self.co.dtype).max and self.co.dtype == np.uint16:
                self.co = self.co.astype(np.uint32)
            prev = np.fromiter(seen, dtype=np.int64, count=len(seen))
            self.co[item, prev] += 1
            self.co[prev, item] += 1
        self.users[item] += 1

    def similarity(self, items: np.ndarray) -> np.ndarray:
        """Cosine of each of ``items`` (rows) to every known item (columns)."""
        n = len(self.ids)
        co = self.co[items, :n].astype(np.float64)
        norm = np.sqrt(self.users[items][:, None] * self.users[None, :n])
        return np.divide(co, norm, out=np.zeros_like(co), where=norm > 0)

    def scores(self, user_id: str) -> np.ndarray:
        seen = self.seen.get(user_id)
        if not seen:
            return np.zeros(len(self.ids))
        recent = []
        for i in reversed(seen):
            recent.append(i)
            if len(recent) == self.last:
                break
        return self.similarity(np.asarray(recent, dtype=np.int64)).sum(axis=0)


class OnlineMF(Baseline):
    """Online matrix factorisation: river's ``FunkMF`` on positives (y = 1) and sampled negatives.

    Each positive event is one SGD step towards 1 for (user, item), followed by ``negatives``
    steps towards 0 for items drawn from those seen so far (uniformly, or in proportion to their
    positive events with ``sampling='popularity'``), skipping items the user has seen. River
    learns; scoring reads a numpy mirror of the item latents, updated after every step, since
    river's ``predict_one`` per item would be far too slow over a whole catalogue.

    The defaults were chosen on the first half (by user-event position) of the MovieLens dev
    log ``ml-watch`` only, by HR@10, one knob at a time from river's defaults (16 factors, SGD
    0.05, no L2, N(0, 0.1) init, 16 uniform negatives: 0.0550): SGD 0.1 0.0825, 0.2 0.1054, 0.4
    diverges; init sigma 0.3 0.0748; L2 0.01 0.1124, 0.03 0.1131, 0.1 (32 factors) 0.0872;
    32 factors with L2 0.01 0.1185, with L2 0.03 0.1223; 64 factors with L2 0.01 0.1212, with
    L2 0.03 0.1309 (kept; more factors were not tried, for time). Negatives drawn by
    popularity lost every time (0.0425 at river's defaults, 0.0914 at SGD 0.2 and L2 0.01), so
    they are drawn uniformly.
    """

    name = "online-mf"
    source = 2

    def __init__(
        self,
        k: int = 20,
        n_factors: int = 64,
        lr: float = 0.2,
        l2: float = 0.03,
        init_sigma: float = 0.1,
        negatives: int = 16,
        sampling: str = "uniform",
        seed: int = 42,
    ) -> None:
        from river import optim, reco

        if sampling not in ("uniform", "popularity"):
            raise ValueError(f"sampling must be 'uniform' or 'popularity', not {sampling!r}")
        self.negatives = negatives
        self.sampling = sampling
        self.n_factors = n_factors
        self.model = reco.FunkMF(
            n_factors=n_factors,
            optimizer=optim.SGD(lr),
            loss=optim.losses.Squared(),
            l2=l2,
            initializer=optim.initializers.Normal(mu=0.0, sigma=init_sigma, seed=seed),
            seed=seed,
        )
        self.vectors = np.zeros((0, n_factors), dtype=np.float64)
        self._rng = np.random.default_rng(seed)
        self._items = array("q")  # items with a positive event, in order of their first one
        self._positives = array("q")  # the item of every positive event (popularity sampling)
        super().__init__(k)

    def _grow(self, cap: int) -> None:
        super()._grow(cap)
        v = np.zeros((cap, self.n_factors), dtype=np.float64)
        v[: len(self.vectors)] = self.vectors
        self.vectors = v

    def _step(self, user_id: str, item: int, y: float) -> None:
        self.model.learn_one(user_id, item, y)
        self.vectors[item] = self.model.i_latents[item]

    def learn_positive(self, user_id: str, item: int, first: bool) -> None:
        if self.pop[item] == 0:
            self._items.append(item)
        self._positives.append(item)
        self._step(user_id, item, 1.0)
        pool = self._items if self.sampling == "uniform" else self._positives
        if len(pool) < 2:
            return
        seen = self.seen.get(user_id, {})
        for j in self._rng.integers(len(pool), size=self.negatives):
            neg = pool[int(j)]
            if neg != item and neg not in seen:
                self._step(user_id, neg, 0.0)

    def scores(self, user_id: str) -> np.ndarray:
        u = self.model.u_latents.get(user_id)  # .get: scoring creates no latent
        if u is None:
            return np.zeros(len(self.ids))
        return self.vectors[: len(self.ids)] @ np.asarray(u, dtype=np.float64)

    def on_forget(self, msg: ForgetUser) -> None:
        super().on_forget(msg)
        self.model.u_latents.pop(msg.user_id, None)


BASELINES: dict[str, type[Baseline]] = {
    "item-knn": ItemKNN,
    "online-mf": OnlineMF,
    "popularity": Popularity,
}


def make_baseline(name: str, k: int = 20, **params: Any) -> Baseline:
    """One of ``BASELINES`` by name; ``params`` go to its constructor."""
    return BASELINES[name](k=k, **params)


def _resized(a: np.ndarray, cap: int) -> np.ndarray:
    out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
    out[: len(a)] = a
    return out


__all__ = ["BASELINES", "Baseline", "ItemKNN", "OnlineMF", "Popularity", "make_baseline"]
