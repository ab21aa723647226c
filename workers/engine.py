"""The per-event engine: ``on_video``, ``on_event -> Recommendations``, ``on_forget``, ``recommend``
(one object, used by the embedded run and the workers alike).

Both the embedded run and the faust workers call these same functions. Each user event is
handled in two steps, so that the streaming path can partition them:

- the **user step** (``user_step``) reads and updates only that user's state and returns the
  item-side effects as plain data (``ItemDeltas``: co-count, popularity, item-factor and fusion
  increments, items named by video id);
- the **item step** (``apply_item_deltas``) adds those increments to the global item state.

In-process they run back to back; across workers the deltas travel through a topic. Counts are
additive, so applying the same deltas in any order gives the same counts.
"""

from __future__ import annotations

import logging
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from types import EllipsisType
from typing import Any

import numpy as np

from schemas import (
    SCHEMA_VERSION,
    ErasureReceipt,
    EventType,
    ForgetUser,
    Recommendations,
    UserEvent,
    VideoPublished,
    recommended_items,
    utcnow,
)
from schemas.messages import Reason, ReasonKind, trusted_reason
from schemas.wire import ItemDeltas
from workers import kernels
from workers.catalog import Catalog
from workers.cooc import CoOccurrence
from workers.decay import half_life_days
from workers.factors import Factors
from workers.live import LiveQuality
from workers.metadata import ItemMeta, UserMeta
from workers.models import Observation
from workers.popularity import Popularity
from workers.ranker import (
    CREATOR_AT,
    FEATURES,
    META_FEATURES,
    SOURCES,
    Fusion,
    Ranked,
    RankerConfig,
    content_profile,
    featurise,
    fuse_and_rank,
    profile_weights,
)
from workers.settings import EngineSettings
from workers.users import (
    NO_ITEMS,
    Ledger,
    UserState,
    event_hash,
    events_kept,
    seen_cap,
    step_history,
)

ENGINE_VERSION = "vidrec-engine-1"
USER_SNAPSHOT_VERSION = 1

log = logging.getLogger(__name__)


def event_weights(settings: EngineSettings) -> dict[EventType, float]:
    return {t: float(getattr(settings, f"weight_{t.value}")) for t in EventType}


@dataclass
class CachedCandidates:
    """A user's content and factor candidates, reused for a few events (derived, never saved).

    Both searches cost O(catalogue) per call (an exact Qdrant search, a full factor product),
    and a user's profile and factors move little from one event to the next, so the candidate
    *sets* are reused for ``candidate_refresh_events`` events; every candidate is still scored
    afresh. A video arriving (``videos_version``) invalidates every entry, so that a new video
    can reach its users at once.
    """

    events: int  # the user's event count when searched
    videos_version: int
    content: np.ndarray
    mf: np.ndarray


class AppliedEvents:
    """The events whose item deltas this engine has applied, so each is applied once.

    A worker meets the same event's deltas up to three ways: its own user step, a resend of
    its outbox after a crash, and replication from ``item-deltas``. Bounded: the oldest ids
    are forgotten first, and a forgotten one can only mean a duplicate much later than any
    redelivery Kafka makes.
    """

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self._ids: dict[str, None] = {}

    def first(self, user_id: str, event_id: str) -> bool:
        """Remember the event as applied; ``False`` when it already was."""
        k = f"{user_id}\x00{event_id}"
        if k in self._ids:
            return False
        self._ids[k] = None
        if len(self._ids) > self.cap:
            del self._ids[next(iter(self._ids))]
        return True


@dataclass(slots=True)
class Step:
    """What one user record did, for the caller to ship: the streaming worker's one door.

    ``deltas`` are already applied to this engine; they are set only when other engines still
    need them (the first application of a non-empty set). ``recs`` is the user's fresh list
    (an event), ``receipt`` the erasure receipt (a forget). A ``duplicate`` did nothing.
    """

    output_id: str  # what the outputs are filed under: the event id, or ``forget@<ts>``
    duplicate: bool = False
    deltas: ItemDeltas | None = None
    recs: Recommendations | None = None
    receipt: ErasureReceipt | None = None


@dataclass(slots=True)
class _RankInputs:
    """A user's ranking inputs gathered before the catalogue-wide content search, so that the
    search can run once for a batch of users (``Engine._rank_many``)."""

    user_id: str
    st: UserState | None
    hist: list[tuple[int, float, float]]
    seen: np.ndarray
    cooc: tuple[np.ndarray, np.ndarray]
    cands: list[np.ndarray]
    profile: np.ndarray | None
    cached: CachedCandidates | None


# What each fusion feature needs among the candidate sources (metadata needs none)
_FEATURE_NEEDS: dict[str, set[str]] = {
    "cooc": {"cooc"},
    "content": {"content"},
    "mf": {"mf"},
    "popular": {"popular"},
    "recent": {"popular"},
    "fresh_content": {"content"},
    "pop_content": {"popular", "content"},
    "seq": {"seq"},
    "creator": set(),
    "language": set(),
    "duration": set(),
    "format": set(),
    "visual": {"content"},
}


def sources_on(settings: EngineSettings, sources: Sequence[str] = SOURCES) -> list[str]:
    """The candidate sources an engine with these settings runs (the sequential model's only
    when it is enabled)."""
    return [x for x in sources if x != "seq" or settings.seq_enabled]


def features_for(sources: Sequence[str]) -> list[str]:
    """The fusion features an engine with these candidate sources ranks with."""
    src = set(sources)
    return [f for f in FEATURES if _FEATURE_NEEDS[f] <= src]


class Engine:
    """The recommender: pure, broker-free, deterministic for a given event order and seed.

    Parameters
    ----------
    settings
        Engine knobs; see ``EngineSettings``.
    encoder
        Anything with ``dim``, ``name`` and ``encode_many(texts) -> (n, dim) array``.
    index
        A ``VideoIndex`` (Qdrant). ``None`` keeps content search in memory, which is only for
        engines without a content source (the behaviour baselines).
    sources
        Which candidate sources and features are switched on; the baselines switch off all but one.
    """

    def __init__(
        self,
        settings: EngineSettings | None = None,
        encoder: Any = None,
        index: Any = None,
        sources: Sequence[str] = SOURCES,
        features: Sequence[str] | None = None,
        learn_fusion: bool = True,
    ) -> None:
        self.settings = s = settings or EngineSettings()
        sources = sources_on(s, sources)
        self.encoder = encoder
        self.index = index
        self.dim = encoder.dim if encoder is not None else 384
        self.weights = event_weights(s)
        self.cfg = RankerConfig(
            sources=tuple(sources),
            n_cooc=s.candidates_cooc,
            n_content=s.candidates_content,
            n_fresh=s.candidates_fresh,
            n_mf=s.candidates_mf,
            n_popular=s.candidates_popular,
            n_seq=s.candidates_seq,
            fresh_s=half_life_days(s.fresh_days),
            recent_half_life_s=half_life_days(s.recent_half_life_days),
            fresh_slots=s.fresh_slots,
        )
        self.catalog = Catalog(self.dim)
        self.cooc = CoOccurrence(
            window=s.cooc_window,
            topk=s.cooc_topk,
            half_life_s=half_life_days(s.cooc_half_life_days),
        )
        self.factors = Factors(
            dim=s.factors_dim,
            lr=s.factors_lr,
            reg=s.factors_l2,
            content_dim=self.dim,
            seed=s.seed,
            loss=s.factors_loss,
        )
        self.popularity = Popularity(half_life_days(s.popularity_half_life_days))
        self.seq = self._new_sequential() if "seq" in self.cfg.sources else None
        # users whose sequences the sequential model trains on, least recently active first
        self._seq_pool: OrderedDict[str, None] = OrderedDict()
        self._seq_memo: tuple[UserState, int, int, int, int, np.ndarray] | None = None
        # per user: (their state object, (ledger total, weights version), hidden state)
        self._seq_hidden: OrderedDict[str, tuple[UserState, tuple[int, int], np.ndarray]] = (
            OrderedDict()
        )
        if features is None:
            features = features_for(self.cfg.sources)
        self.fusion = Fusion(
            lr=s.fusion_lr if learn_fusion else 0.0, reg=s.fusion_l2, enabled=features
        )
        self.item_meta = ItemMeta()
        # users' metadata tastes are learned only when a metadata feature ranks with them;
        # creators' new videos are candidates only when the creator feature does
        self._meta_on = any(f in features for f in META_FEATURES)
        self._creator_on = "creator" in features and s.candidates_creator > 0
        self._meta_half_life_s = half_life_days(s.metadata_half_life_days)
        self.users: dict[str, UserState] = {}
        self.now = 0.0
        self.n_events = 0
        self._neg_pool: deque[int] = deque(maxlen=5000)
        # content searches that failed (Qdrant down or slow): those lists were ranked without
        # content candidates instead of failing the event
        self.degraded_searches = 0
        # HR@10 / NDCG@10 of the lists published against each user's next positive event
        self.live = LiveQuality(s.live_window)
        self._cands: OrderedDict[str, CachedCandidates] = OrderedDict()
        self._videos_version = 0
        self._content_changes = 0  # videos whose content vector changed (not new ones)
        self._since_sweep = 0
        self._view_memo: tuple[UserState, int, list, np.ndarray] | None = None
        self.applied = AppliedEvents()
        # reasons already built, by history item and how (``_reasons``); a video whose
        # category changes empties it (a new_in_topic reason names the category)
        self._reason_memo: dict[int, Reason] = {-1: _TRENDING}

    # -- videos -----------------------------------------------------------------------------
    def on_video(self, video: VideoPublished) -> None:
        self.on_videos([video])

    def on_videos(
        self,
        videos: Sequence[VideoPublished],
        vectors: np.ndarray | None = None,
        visuals: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """Embed a batch of videos (one encoder call) and make them recommendable at once.

        ``visuals``: each video's thumbnail descriptor (``workers.thumbnails``) or None; a
        video redelivered without one keeps the descriptor it had (a thumbnail that timed out
        this time has not changed).
        """
        if not videos:
            return
        if visuals is not None and len(visuals) != len(videos):
            raise ValueError("videos and visuals differ in length")
        if vectors is None:
            if self.encoder is None:
                vectors = np.zeros((len(videos), self.dim), dtype=np.float32)
            else:
                vectors = self.encoder.encode_many([v.text() for v in videos])
        # Unit rows, as Qdrant's cosine sees them, since the in-memory search ranks by dot
        # product. Encoders already return unit rows; those are kept bit for bit.
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        off = (np.abs(norms - 1.0) > 1e-4) & (norms > 0)
        if off.any():
            vectors = np.where(off, vectors / np.where(off, norms, 1.0), vectors)
        pubs = [v.published_at.timestamp() for v in videos]
        visual = self._visuals_of(videos, visuals)
        self._videos_version += 1
        if self.index is not None:
            # ``visuals`` only when there are some: an index without them keeps its signature
            more = {"visuals": visual} if any(x is not None for x in visual) else {}
            self.index.upsert_many(
                [v.video_id for v in videos],
                vectors,
                [_payload(v, p) for v, p in zip(videos, pubs, strict=True)],
                **more,
            )
        for v, vec, pub, vis in zip(videos, vectors, pubs, visual, strict=True):
            new = self.catalog.get(v.video_id) is None
            idx = self.catalog.add(v.video_id, pub)
            self.item_meta.set(idx, v)
            if vis is not None:
                self.catalog.set_visual(idx, vis)
            same = self.catalog.has_content[idx] and np.array_equal(self.catalog.vectors[idx], vec)
            self.catalog.set_content(idx, vec, pub)
            if self.catalog.set_category(idx, v.category) and not new:
                self._reason_memo = {-1: _TRENDING}
            if new:
                self.factors.add_item(idx, vec if self.encoder is not None else None, v.video_id)
            elif not same:  # a redelivered video must not blend its content in again
                self.factors.set_content(idx, vec)
                self._content_changes += 1

    def _visuals_of(
        self, videos: Sequence[VideoPublished], visuals: Sequence[np.ndarray | None] | None
    ) -> list[np.ndarray | None]:
        """Each video's descriptor: the new one (unit norm), else the one the catalogue has."""
        out: list[np.ndarray | None] = []
        for i, v in enumerate(videos):
            vis = None if visuals is None else visuals[i]
            if vis is not None:
                vis = np.asarray(vis, dtype=np.float32)
                norm = float(np.linalg.norm(vis))
                if vis.shape != (self.catalog.visual_dim,) or not np.isfinite(norm) or norm == 0:
                    raise ValueError(
                        f"video {v.video_id}: visual descriptor of shape {vis.shape}, expected "
                        f"({self.catalog.visual_dim},), finite and non-zero"
                    )
                vis = vis / norm
            else:
                idx = self.catalog.get(v.video_id)
                vis = None if idx is None else self.catalog.visual_of(idx)
            out.append(vis)
        return out

    # -- user events ------------------------------------------------------------------------
    def on_event(self, event: UserEvent) -> Recommendations | None:
        """Learn from one event and return the user's fresh list; ``None`` for a duplicate."""
        t0 = time.perf_counter()
        if self._learn_event(event, t0).duplicate:
            return None
        return self.publish(event.user_id, event.event_id, t0)

    def train_if_due(self) -> None:
        """The in-process run's training pace: a sequential-model step every
        ``seq_train_every`` accepted events (synchronous, so a replay is deterministic)."""
        every = self.settings.seq_train_every
        if self.seq is not None and every and self.n_events % every == 0:
            self.train_sequential()

    def step(self, msg: UserEvent | ForgetUser, t0: float) -> Step:
        """Handle one user record as a worker does: learn, apply item deltas once, rank.

        The difference from ``on_event``: item deltas are applied once per event id however
        often the record comes (redelivery, replication), and the result says what to ship.
        """
        step = self._learn_record(msg, t0)
        if isinstance(msg, ForgetUser) or step.duplicate:
            return step
        step.recs = self.publish(msg.user_id, msg.event_id, t0)
        return step

    def step_many(self, msgs: Sequence[UserEvent | ForgetUser], t0s: Sequence[float]) -> list[Step]:
        """``step`` for a micro-batch of user records, ranking its users together.

        Each record is learned in order exactly as ``step`` learns it; the lists are then ranked
        for the batch's users at once (``publish_many``: one content search for all of them).
        A list is ranked before anything touches its user again: a user's second event in the
        batch, a forget (of anyone), or an idle-user sweep first publishes what is pending. So
        a user's list reflects all of that user's events up to its own, their next event is
        learned against it (the fusion reads it, an evaluator scores it), and a batch of one is
        ``step``. What differs from record-by-record is only item state: a list also sees the
        other users' events of the same batch, which arrived before it was published.
        """
        return self._batched(msgs, t0s, self._learn_record)

    def on_events(self, events: Sequence[UserEvent]) -> list[Recommendations | None]:
        """``on_event`` for a micro-batch (``None`` for a duplicate), ranked as ``step_many``
        ranks: the embedded run's and the bench's batched path."""
        t0 = time.perf_counter()
        steps = self._batched(events, [t0] * len(events), self._learn_event)
        return [s.recs for s in steps]

    def _learn_record(self, msg: UserEvent | ForgetUser, t0: float) -> Step:
        """The learning half of ``step``; a step without ``recs`` for an event awaits its list."""
        if isinstance(msg, ForgetUser):
            return self._forget_once(msg)
        deltas = self.user_step(msg)
        if deltas is None:
            return Step(msg.event_id, duplicate=True)
        ship = self.apply_once(msg.user_id, msg.event_id, deltas) and not deltas.is_empty()
        return Step(msg.event_id, deltas=deltas if ship else None)

    def _learn_event(self, event: UserEvent | ForgetUser, t0: float) -> Step:
        """The learning half of ``on_event``."""
        if isinstance(event, ForgetUser):
            raise TypeError("on_events takes user events; forget with on_forget")
        deltas = self.user_step(event)
        if deltas is None:
            return Step(event.event_id, duplicate=True)
        self.apply_item_deltas(deltas)
        self.train_if_due()
        return Step(event.event_id)

    def _batched(
        self,
        msgs: Sequence[UserEvent | ForgetUser],
        t0s: Sequence[float],
        learn: Callable[[UserEvent | ForgetUser, float], Step],
    ) -> list[Step]:
        if len(msgs) != len(t0s):
            raise ValueError(f"{len(msgs)} records but {len(t0s)} start times")
        steps: list[Step] = []
        waiting: dict[str, int] = {}  # user -> position of the step awaiting the user's list

        def rank_waiting() -> None:
            if not waiting:
                return
            users, at = list(waiting), list(waiting.values())
            recs = self.publish_many(users, [steps[i].output_id for i in at], [t0s[i] for i in at])
            for i, r in zip(at, recs, strict=True):
                steps[i].recs = r
            waiting.clear()

        for msg, t0 in zip(msgs, t0s, strict=True):
            if (
                isinstance(msg, ForgetUser)
                or msg.user_id in waiting
                or self._since_sweep + 1 >= max(1000, len(self.users))  # user_step may sweep
            ):
                rank_waiting()
            step = learn(msg, t0)
            steps.append(step)
            if isinstance(msg, UserEvent) and not step.duplicate:
                waiting[msg.user_id] = len(steps) - 1
        rank_waiting()
        return steps

    def _forget_once(self, msg: ForgetUser) -> Step:
        forget_id = f"forget@{msg.ts.timestamp()!r}"
        done = self.users.get(msg.user_id)
        if done is not None and done.forgotten_at is not None:
            if msg.ts.timestamp() <= done.forgotten_at:
                return Step(forget_id, duplicate=True)
        receipt, deltas = self.forget_step(msg)
        ship = self.apply_once(msg.user_id, forget_id, deltas) and not deltas.is_empty()
        return Step(forget_id, deltas=deltas if ship else None, receipt=receipt)

    def apply_once(
        self, user_id: str, event_id: str, deltas: ItemDeltas, *, replicated: bool = False
    ) -> bool:
        """Apply an event's item deltas unless this engine already has; ``True`` if applied now."""
        if not self.applied.first(user_id, event_id):
            return False
        self.apply_item_deltas(deltas, replicated=replicated)
        return True

    # -- user snapshots (what a worker's table holds per user) -----------------------------------
    def holds_user(self, user_id: str) -> bool:
        return user_id in self.users

    def snapshot_user(self, user_id: str) -> dict[str, Any] | None:
        """Everything held about one user, JSON-able; ``None`` for a user not held."""
        st = self.users.get(user_id)
        if st is None:
            return None
        u = self.factors.users.get(user_id)
        return {
            "v": USER_SNAPSHOT_VERSION,
            "user": st.to_state(self.catalog.ids),
            "factors": None if u is None else [float(x) for x in u],
            "meta": None if st.meta is None else st.meta.to_state(self.item_meta),
        }

    def restore_user(self, user_id: str, snap: dict[str, Any]) -> None:
        """Install a user's snapshot, replacing whatever was held about the user."""
        st = self.users[user_id] = UserState.from_state(snap["user"], self.item_index)
        if snap.get("meta") is not None:  # snapshots from before issue 16 have none
            st.meta = UserMeta.from_state(snap["meta"], self.item_meta)
        self.drop_cached(user_id)
        if snap.get("factors") is not None:
            self.factors.users[user_id] = np.asarray(snap["factors"], dtype=np.float32)
        else:
            self.factors.users.pop(user_id, None)

    def evict_user(self, user_id: str) -> None:
        """Drop a user from memory (not a forget: a worker's table still holds them)."""
        self.users.pop(user_id, None)
        self.factors.users.pop(user_id, None)
        self.drop_cached(user_id)

    def publish(self, user_id: str, trigger_event_id: str | None, t0: float) -> Recommendations:
        """Rank for the user, remember the head of the ranking, and build the message.

        The head remembered is ``fusion_pool`` items long (at least the list published): the
        fusion learns from where the user's next pick stood in it.
        """
        return self._published(
            user_id, self._rank(user_id, self._pool_k(), cache=True), trigger_event_id, t0
        )

    def publish_many(
        self, user_ids: Sequence[str], triggers: Sequence[str | None], t0s: Sequence[float]
    ) -> list[Recommendations]:
        """``publish`` for several distinct users at once: one catalogue-wide content search
        for all of them (``_rank_many``), then each list as ``publish`` builds it."""
        ranked = self._rank_many(user_ids, self._pool_k())
        return [
            self._published(u, r, trig, t0)
            for u, r, trig, t0 in zip(user_ids, ranked, triggers, t0s, strict=True)
        ]

    def _pool_k(self) -> int:
        k = self.settings.k
        return max(k, self.settings.fusion_pool) if self.fusion.lr > 0 else k

    def _published(
        self, user_id: str, ranked: Ranked, trigger_event_id: str | None, t0: float
    ) -> Recommendations:
        k = self.settings.k
        st = self.users.get(user_id)
        if st is not None:
            st.last_recs = array("i", ranked.items.astype(np.int32).tobytes())
        if len(ranked.items) > k:
            ranked = Ranked(
                ranked.items[:k],
                ranked.scores[:k],
                ranked.sources[:k],
                ranked.fresh[:k],
                ranked.history,
                ranked.creator[:k],
            )
        ids = [self.catalog.ids[i] for i in ranked.items]
        return self._message(user_id, ranked, ids, trigger_event_id, t0)

    def user_step(self, event: UserEvent) -> ItemDeltas | None:
        """Update the user's own state; return the item-side effects (``None``: duplicate)."""
        s = self.settings
        ts = event.ts.timestamp()
        self.now = max(self.now, ts)
        st = self.users.get(event.user_id)
        if st is None:
            st = self.users[event.user_id] = UserState()
        if st.forgotten_at is not None and ts <= st.forgotten_at:
            return None  # a redelivered event from before the user asked to be forgotten
        h = event_hash(event.event_id)
        if st.has_event(h):
            return None
        st.remember_event(h, s.dedup_len)
        st.events += 1
        st.last_ts = max(st.last_ts, ts)
        self.n_events += 1
        self._since_sweep += 1
        if self._since_sweep >= max(1000, len(self.users)):
            self.expire_idle_users(keep=event.user_id)
        deltas = ItemDeltas(ts=ts)
        w = self.weights[event.type]
        if w == 0:
            return deltas
        # An event may precede its video (or the video never arrives): learn behaviour now,
        # content joins when the video does.
        idx = self.item_index(event.video_id, ts)
        vid = self.catalog.ids[idx]
        deltas.popularity.append((vid, w, ts))
        if w < 0:
            st.ledger.append(idx, ts, w, events_kept(s))
            st.mark_seen(idx, seen_cap(s))
            return deltas
        hist, seen = self.user_view(st)
        if st.last_recs:
            # Live quality counts what `vidrec evaluate` counts: a positive event on a video the
            # user has not acted on (a seen one is never in a list), against the list published
            # after the user's previous event (its head: ``last_recs`` may go deeper than k).
            p = int(seen.searchsorted(idx))
            if p == len(seen) or seen[p] != idx:
                self.live.learn_one(st.last_recs if s.k >= 10 else st.last_recs[: s.k], idx)
        if hist and hist[0][0] == idx:
            # A further positive action on the item just watched (play -> complete -> like)
            # strengthens it in place instead of co-counting the item with itself.
            st.ledger.append(idx, ts, w, events_kept(s))
            self._learn_meta(st, idx, w, ts)
            return deltas
        if st.last_recs and self.fusion.lr > 0:
            deltas.fusion = self._fusion_rows(event.user_id, st, idx, hist)
        # after the fusion's rows, which must see the tastes the list was ranked with
        self._learn_meta(st, idx, w, ts)
        ids = self.catalog.ids
        window = [(ids[i], t, hw) for i, t, hw in hist[: self.cooc.window]]
        deltas.cooc.extend(self.cooc.deltas_one(Observation(event.user_id, vid, ts, w, window)))
        negs = self._negatives(event.event_id, seen, idx)
        fdeltas = self.factors.deltas_one(Observation(event.user_id, idx, ts, w, negatives=negs))
        # float32 rows, as applied and as shipped: no detour through Python floats
        deltas.factors = [(ids[i], g.astype(np.float32), float(b)) for i, g, b in fdeltas]
        self._neg_pool.append(idx)
        deltas.positive = vid
        st.ledger.append(idx, ts, w, events_kept(s))
        st.mark_seen(idx, seen_cap(s))
        if self.seq is not None:
            pool = self._seq_pool
            pool[event.user_id] = None
            pool.move_to_end(event.user_id)
            if len(pool) > s.seq_pool_users:
                pool.popitem(last=False)
        return deltas

    def _learn_meta(self, st: UserState, idx: int, w: float, ts: float) -> None:
        if self._meta_on:
            if st.meta is None:
                st.meta = UserMeta()
            st.meta.learn_one(self.item_meta.of(idx), w, ts, self._meta_half_life_s)

    def item_index(self, video_id: str, ts: float) -> int:
        """The catalogue index of ``video_id``, registering a video known only from events."""
        i = self.catalog.get(video_id)
        if i is None:
            i = self.catalog.add(video_id, ts)
            self.factors.add_item(i, None, self.catalog.ids[i])
        return i

    def user_view(self, st: UserState) -> tuple[list[tuple[int, float, float]], np.ndarray]:
        """The user's history (most recent first) and seen items, derived from the ledger.

        Remembered for the last user asked about until the ledger changes: one event's user
        step, ranking and fusion gradient read the same view.
        """
        memo = self._view_memo
        total = st.ledger.total
        if memo is not None and memo[0] is st and memo[1] == total:
            return memo[2], memo[3]
        s = self.settings
        hist = st.ledger.history(s.history_len)
        seen = st.seen
        if s.rewatch:  # only the videos just watched are held back
            seen = np.unique(np.array([h[0] for h in hist[: s.cooc_window]], dtype=np.int32))
        self._view_memo = (st, total, hist, seen)
        return hist, seen

    def history_of(self, user_id: str) -> list[tuple[str, float, float]]:
        """The user's history as ``(video_id, ts, weight)``, most recent first."""
        st = self.users.get(user_id)
        if st is None:
            return []
        ids = self.catalog.ids
        return [(ids[i], t, w) for i, t, w in self.user_view(st)[0]]

    def seen_of(self, user_id: str) -> list[str]:
        """The videos the user has seen (and is not shown again), most recent first."""
        st = self.users.get(user_id)
        if st is None:
            return []
        ids = self.catalog.ids
        recent = st.ledger.seen_recent(len(st.ledger), len(st.seen))
        older = sorted(set(st.seen.tolist()) - set(recent))  # acted on before the ledger's start
        return [ids[i] for i in recent + older]

    def _negatives(self, event_id: str, seen: np.ndarray, pos: int) -> list[int]:
        """Sampled negatives for the factors, seeded by the event id.

        ``factors_sampling``: ``"uniform"`` over the catalogue, or ``"popular"``, in proportion
        to recent events (items of the last 5,000 positives).
        """
        n = self.settings.factors_negatives
        if self.settings.factors_sampling == "uniform":
            pool: Sequence[int] = range(len(self.catalog))
        else:
            pool = self._neg_pool
        if not pool:
            return []
        draws = _splitmix64(event_hash(f"{self.settings.seed}:{event_id}"), n * 2)
        picks = [pool[d % len(pool)] for d in draws]
        unseen = ~_in_sorted(np.array(picks, dtype=np.int64), seen)
        out = []
        for j, ok in zip(picks, unseen.tolist(), strict=True):
            if ok and j != pos:
                out.append(j)
                if len(out) == n:
                    break
        return out

    def apply_item_deltas(self, deltas: ItemDeltas, *, replicated: bool = False) -> None:
        """The item step: add one event's item-side increments to the global item state.

        ``replicated``: the deltas come from another engine's user step (another worker, or
        this worker's predecessor before a restart), so their positive item also joins the
        negative-sampling pool, which the local user step fills only for its own events.
        """
        self.now = max(self.now, deltas.ts)
        get, ts = self.catalog.get, deltas.ts

        def idx(vid: str) -> int:
            i = get(vid)
            return i if i is not None else self.item_index(vid, ts)

        if deltas.sign not in (1, -1):
            raise ValueError(f"item deltas sign must be 1 or -1, got {deltas.sign!r}")
        sign = deltas.sign
        if deltas.cooc:
            self.cooc.apply_many((idx(a), idx(b), sign * amt, t) for a, b, amt, t in deltas.cooc)
        if deltas.popularity:
            pops = ((idx(v), amt, t) for v, amt, t in deltas.popularity)
            if sign > 0:
                self.popularity.apply_many(pops)
            else:
                self.popularity.subtract_many(pops)
        if deltas.factors:
            self.factors.apply_many(
                (idx(v), np.asarray(g, dtype=np.float32), b) for v, g, b in deltas.factors
            )
        if deltas.fusion is not None:
            self.fusion.learn_many(deltas.fusion)
        if replicated and deltas.positive is not None:
            self._neg_pool.append(idx(deltas.positive))

    def _fusion_rows(
        self, user_id: str, st: UserState, pos: int, hist: list[tuple[int, float, float]]
    ) -> list[list[float]] | None:
        """The item the user picked should have outscored its neighbours in our ranking.

        Only a pick that stood in the head of our last ranking teaches: those items went
        through the same candidate generation, so their features are comparable. A pick we
        never retrieved says that candidate generation missed it, not how to weigh the sources
        (learning from it taught the fusion that co-occurrence is bad, since what we retrieve
        has high co-occurrence by construction). It is compared with the ``fusion_negatives``
        items ranked just above it and as many just below, its features computed as when the
        list was ranked (``hist``: the history before this event).
        """
        recs = st.last_recs
        if pos not in recs:
            return None
        p, n = recs.index(pos), self.settings.fusion_negatives
        negs = [*recs[max(0, p - n) : p], *recs[p + 1 : p + 1 + n]]
        if not negs:
            return None
        items = np.array([pos, *negs], dtype=np.int64)
        feats = self._features(user_id, st, items, hist=hist)
        return self.fusion.rows(feats[0], feats[1:]) or None

    # -- expiry -----------------------------------------------------------------------------
    def expire_idle_users(self, keep: str | None = None) -> list[str]:
        """Drop the state of users idle for ``user_ttl_days`` of stream time; return them.

        Called from ``user_step`` once per ``max(1000, users)`` events, so the sweep costs O(1)
        per event and the user table stays bounded by the users active within the TTL. Expiry
        is not forgetting: what the user taught the items (co-counts, popularity, item
        factors) stays, and a user who comes back starts afresh, except that what they watched
        is still never recommended to them: an idle user keeps only the seen set (4 bytes a
        video; without it, 15 % of the dev log's lists held a watched movie, for users back
        after a pause). Tombstones of forgotten users stay: they are what stops a redelivery
        of erased events from being learned again. ``keep`` is never dropped (the user whose
        event is being handled, however late it is).
        """
        self._since_sweep = 0
        cutoff = self.now - self.settings.user_ttl_days * 86400.0
        idle = [
            u
            for u, st in self.users.items()
            if st.forgotten_at is None
            and st.last_ts < cutoff
            and u != keep
            and (st.events or not len(st.seen))  # not already reduced to its seen set
        ]
        for u in idle:
            st = self.users.pop(u)
            if len(st.seen):
                self.users[u] = UserState(seen=st.seen, last_ts=st.last_ts)
            self.factors.forget_user(u)
            self._seq_pool.pop(u, None)
            self.drop_cached(u)
        return idle

    def drop_cached(self, user_id: str) -> None:
        """Drop what is derived from the user's state (for a user removed or replaced)."""
        self._cands.pop(user_id, None)
        self._seq_hidden.pop(user_id, None)
        self._seq_memo = None

    # -- forgetting -------------------------------------------------------------------------
    def on_forget(self, msg: ForgetUser) -> ErasureReceipt:
        """Erase everything held about the user (see ``forget_step``); returns the receipt."""
        receipt, deltas = self.forget_step(msg)
        self.apply_item_deltas(deltas)
        return receipt

    def forget_step(self, msg: ForgetUser) -> tuple[ErasureReceipt, ItemDeltas]:
        """The user step of a forget: erase the user's own state, return what items must lose.

        The user's co-counts and popularity are recomputed from the ledger by the same
        functions that added them and come back as subtracting ``ItemDeltas``, so that they
        reach every worker the way the additions did. What is left of the user is a tombstone
        holding only the time of the forget, so that a replay or a redelivery of the user's
        earlier events cannot teach the engine about them again.
        """
        st = self.users.pop(msg.user_id, None)
        had_seq_state = msg.user_id in self._seq_hidden
        self.drop_cached(msg.user_id)
        had_factors = self.factors.forget_user(msg.user_id)
        in_seq_pool = msg.user_id in self._seq_pool
        self._seq_pool.pop(msg.user_id, None)
        requested = msg.ts.timestamp()
        self.users[msg.user_id] = UserState(forgotten_at=requested)
        deltas = ItemDeltas(ts=self.now, sign=-1)
        dropped, n_hist, n_seen = 0, 0, 0
        if st is not None:
            deltas.cooc, deltas.popularity = self.contributions(st.ledger)
            dropped = st.ledger.dropped
            hist, seen = self.user_view(st)
            n_hist, n_seen = len(hist), len(seen)
            self._view_memo = None
        kept = [
            "item factors and fusion weights: learned by SGD, where each event's step depends "
            "on everything learned before it, so they cannot be subtracted; the user's own "
            "factor vector is deleted and what items learned from it fades as others' events "
            "overwrite it",
        ]
        if self.seq is not None:
            kept.append(
                "sequential model weights: trained by SGD on mini-batches of recent users' "
                f"sequences ({self.seq.steps} steps so far), which may have held this user's, so "
                "they cannot be subtracted; the model holds nothing per user (a user is only a "
                "sequence read from the ledger when scoring or training), the user's ledger is "
                "deleted and the user is dropped from the training pool, so no later step sees "
                "their events, and what the weights learned from them fades as training goes on"
            )
        if dropped:
            kept.append(
                f"co-counts and popularity of the user's {dropped} oldest events, beyond the "
                f"ledger of {events_kept(self.settings)}: decayed, but still counted"
            )
        receipt = ErasureReceipt(
            user_id=msg.user_id,
            requested_at=msg.ts,
            erased_at=utcnow(),
            erased={
                "events": st.events if st else 0,
                "history_items": n_hist,
                "seen_items": n_seen,
                "dedup_ids": len(st.dedup) if st else 0,
                "cached_recommendations": len(st.last_recs) if st else 0,
                "factors": int(had_factors),
                "ledger_events": len(st.ledger) if st else 0,
                "cooc_increments": len(deltas.cooc),
                "popularity_increments": len(deltas.popularity),
                **(st.meta.held() if st is not None and st.meta is not None else _NO_META),
                **(
                    {"seq_training_pool": int(in_seq_pool), "seq_user_state": int(had_seq_state)}
                    if self.seq is not None
                    else {}
                ),
            },
            kept=kept,
        )
        return receipt, deltas

    def contributions(
        self, ledger: Ledger
    ) -> tuple[list[tuple[str, str, float, float]], list[tuple[str, float, float]]]:
        """The co-count and popularity increments a user's ledger added, recomputed exactly."""
        cooc: list[tuple[str, str, float, float]] = []
        pop: list[tuple[str, float, float]] = []
        history: deque = deque()
        for vid, ts, w in ledger.rows(self.catalog.ids):
            pop.append((vid, w, ts))
            if w <= 0:
                continue
            counts, before = step_history(history, vid, ts, w, self.settings.history_len)
            if counts:
                cooc.extend(self.cooc.deltas_one(Observation(None, vid, ts, w, before)))
        return cooc, pop

    # -- the sequential model -----------------------------------------------------------------
    def _new_sequential(self) -> Any:
        from workers.sequential import SequentialModel

        s = self.settings
        return SequentialModel(
            self.dim,
            dim=s.seq_dim,
            layers=s.seq_layers,
            heads=s.seq_heads,
            max_len=s.seq_len,
            dropout=s.seq_dropout,
            lr=s.seq_lr,
            l2=s.seq_l2,
            batch=s.seq_batch,
            loss=s.seq_loss,
            negatives=s.seq_negatives,
            threads=s.seq_threads,
            seed=s.seed,
        )

    def _sequence(self, st: UserState) -> list[int]:
        """The user's last ``seq_len`` positive videos, oldest first (runs merged, as in the
        history the other models read)."""
        return [h[0] for h in reversed(st.ledger.history(self.settings.seq_len + 1))]

    def train_sequential(self, steps: int | None = None) -> float | None:
        """Training rounds of the sequential model on recently active users' sequences.

        Users are drawn uniformly from the ``seq_pool_users`` most recently active, seeded by
        the model's step count, so a replay trains the same way every time. The in-process run
        calls this every ``seq_train_every`` events; a worker may call it from a thread (the
        model swaps its serving weights atomically). Returns the last step's loss.
        """
        if self.seq is None or not self._seq_pool:
            return None
        loss = None
        pool = list(self._seq_pool)
        cat = self.catalog
        for _ in range(steps or self.settings.seq_steps):
            rng = np.random.default_rng([self.settings.seed, self.seq.steps])
            picks = rng.choice(len(pool), size=min(self.seq.batch, len(pool)), replace=False)
            seqs = []
            for j in sorted(picks.tolist()):
                st = self.users.get(pool[j])
                if st is not None:
                    seqs.append(self._sequence(st))
            n = len(cat)
            loss = self.seq.step(seqs, cat.vectors[:n], cat.has_content[:n]) or loss
        self._seq_memo = None
        return loss

    def _seq_scores(self, user_id: str, st: UserState | None) -> np.ndarray | None:
        """The sequential model's scores of the whole catalogue for the user (None: off, or a
        user without history).

        The user's state after their sequence is kept per user (``dim`` floats, bounded by
        ``candidate_cache_users``) until their ledger or the weights change, so the fusion's
        update at the user's next event reuses the forward pass made to rank their last list.
        The scores themselves are remembered for the last user only.
        """
        if self.seq is None or st is None or not len(st.ledger):
            return None
        cat = self.catalog
        n, token = len(cat), self._content_changes
        key = (st.ledger.total, self.seq.version, n, token)
        memo = self._seq_memo
        if memo is not None and memo[0] is st and memo[1:5] == key:
            return memo[5]
        vectors, has = cat.vectors[:n], cat.has_content[:n]
        kept = self._seq_hidden.get(user_id)
        if kept is not None and kept[0] is st and kept[1] == key[:2]:
            h = kept[2]
        else:
            seq = self._sequence(st)[-self.settings.seq_len :]
            if not seq:
                return None
            h = self.seq.hidden_many([seq], vectors, has, token)
            self._seq_hidden[user_id] = (st, key[:2], h)
            self._seq_hidden.move_to_end(user_id)
            while len(self._seq_hidden) > max(1, self.settings.candidate_cache_users):
                self._seq_hidden.popitem(last=False)
        scores = self.seq.scores_from(h, vectors, has, token)[0]
        self._seq_memo = (st, *key, scores)
        return scores

    # -- ranking (reads state, never creates any) -------------------------------------------
    def recommend(self, user_id: str, k: int | None = None) -> Recommendations:
        t0 = time.perf_counter()
        ranked = self._rank(user_id, k or self.settings.k)
        ids = [self.catalog.ids[i] for i in ranked.items]
        return self._message(user_id, ranked, ids, None, t0)

    def _history_idx(self, st: UserState | None) -> list[tuple[int, float, float]]:
        return self.user_view(st)[0] if st is not None else []

    def _features(
        self,
        user_id: str,
        st: UserState | None,
        items: np.ndarray,
        hist: list[tuple[int, float, float]] | None = None,
        cooc: tuple[np.ndarray, np.ndarray] | None = None,
        profile: np.ndarray | None | EllipsisType = ...,
        seq: np.ndarray | None | EllipsisType = ...,
    ) -> np.ndarray:
        """Features of ``items`` for the user; ``cooc``, ``profile`` and ``seq`` (the sequential
        model's scores of the whole catalogue) when the caller has them already (``...``: not
        computed yet; ``None`` is a profile: the user has none)."""
        cfg = self.cfg
        if hist is None:
            hist = self._history_idx(st)
        if cooc is None:
            cooc = self.cooc.score_history_arrays(hist) if "cooc" in cfg.sources else _NO_COOC
        if profile is ...:
            profile = self._profile(hist)
        mf = (
            self.factors.score_user(user_id, items)
            if "mf" in cfg.sources
            else np.zeros(len(items), dtype=np.float32)
        )
        pop = (
            self.popularity.normalised(items)
            if "popular" in cfg.sources
            else np.zeros(len(items), dtype=np.float32)
        )
        if seq is ...:
            seq = self._seq_scores(user_id, st)
        meta = None
        if self._meta_on and st is not None and st.meta is not None:
            meta = st.meta.features(*self.item_meta.columns(items))
        return featurise(
            items,
            now=self.now,
            cooc=cooc,
            profile=profile,
            vectors=self.catalog.vectors,
            published_at=self.catalog.published_at,
            visual=self._visual_column(hist, items),
            mf=mf,
            popular=pop,
            cfg=cfg,
            seq=None if seq is None else seq[items],
            meta=meta,
        )

    def _visual_column(
        self, hist: list[tuple[int, float, float]], items: np.ndarray
    ) -> np.ndarray | None:
        """The ``visual`` feature of ``items``: cosine of each item's thumbnail descriptor with
        the user's visual profile (recency-weighted mean of the descriptors of their recent
        items, as ``content_profile``), 0 where either is missing; None while no video has a
        descriptor or the feature is off (nothing to compute)."""
        cat = self.catalog
        if not hist or len(cat.visuals) == 0 or not self.fusion.mask[_VISUAL_AT]:
            return None
        rows, w = profile_weights(hist, self.cfg.profile_len, self.cfg.profile_decay)
        w *= cat.has_visual[rows]
        if not w.any():
            return None
        keep = w != 0
        prof = cat.visual_profile(rows[keep], w[keep])
        if prof is None:
            return None
        items = np.asarray(items, dtype=np.int64)
        out = np.zeros(len(items), dtype=np.float32)
        have = np.flatnonzero(cat.has_visual[items])
        if len(have):
            out[have] = cat.visual_cosines(items[have], prof)
        return out

    def _profile(self, hist: list[tuple[int, float, float]]) -> np.ndarray | None:
        """The user's content profile (``None`` without content or history)."""
        if "content" not in self.cfg.sources or not hist:
            return None
        cfg = self.cfg
        cat = self.catalog
        return content_profile(
            cat.vectors, cat.has_content, hist, cfg.profile_len, cfg.profile_decay
        )

    def _rank(self, user_id: str, k: int, cache: bool = False) -> Ranked:
        """Rank candidates for the user; ``cache`` reuses (and keeps) the user's candidate sets."""
        p = self._rank_inputs(user_id, cache)
        content = None
        if p.cached is None and p.profile is not None:
            content = self._content_candidates(p.profile, p.st)
        return self._rank_from(p, k, cache, content)

    def _rank_many(self, user_ids: Sequence[str], k: int) -> list[Ranked]:
        """``_rank(u, k, cache=True)`` for each of several distinct users, with one content
        search for all whose candidates are due: a catalogue scan per user is memory-bound, and
        one matrix product reads the catalogue once for the batch (at 100k videos, 14 ms a user
        alone against 2.5 ms each in a batch of 32). The results are those of ``_rank`` but for
        float rounding in the product (near-ties at the candidate cut)."""
        inputs = [self._rank_inputs(u, True) for u in user_ids]
        due = [i for i, p in enumerate(inputs) if p.cached is None and p.profile is not None]
        found: dict[int, list[int]] = {}
        if len(due) > 1 and self._searches_in_memory():
            many = self._content_candidates_in_memory_many(
                np.stack([inputs[i].profile for i in due]),  # type: ignore[misc]
                [inputs[i].seen for i in due],
            )
            found = dict(zip(due, many, strict=True))
        else:
            for i in due:
                found[i] = self._content_candidates(inputs[i].profile, inputs[i].st)  # type: ignore[arg-type]
        mf: dict[int, np.ndarray] = {}
        if "mf" in self.cfg.sources:
            fetch = [i for i, p in enumerate(inputs) if p.cached is None]
            tops = self._factor_tops([user_ids[i] for i in fetch], self.cfg.n_mf)
            mf = dict(zip(fetch, tops, strict=True))
        return [self._rank_from(p, k, True, found.get(i), mf.get(i)) for i, p in enumerate(inputs)]

    def _factor_tops(self, user_ids: Sequence[str], n: int) -> list[np.ndarray]:
        """``Factors.top_items`` for several users with one matrix product (the catalogue's
        factors read once for all of them). It reads the factors' arrays, so a test holds it
        to ``top_items``; one user goes to ``top_items`` itself."""
        f, n_items = self.factors, len(self.catalog)
        vecs = [f.users.get(u) for u in user_ids]
        have = [i for i, v in enumerate(vecs) if v is not None]
        if len(have) < 2 or n_items == 0:
            return [f.top_items(u, n, n_items) for u in user_ids]
        out = [_NO_ITEMS] * len(user_ids)
        scores = np.stack([vecs[i] for i in have]) @ f.items[:n_items].T
        scores += f.bias[:n_items]
        scores[:, ~f._known[:n_items]] = -np.inf
        m = min(n, n_items)
        for i, row in zip(have, scores, strict=True):
            top = np.argpartition(-row, m - 1)[:m]
            out[i] = top[np.isfinite(row[top])].astype(np.int64)
        return out

    def _rank_inputs(self, user_id: str, cache: bool) -> _RankInputs:
        """What ranking needs of the user before the catalogue-wide content search."""
        cfg = self.cfg
        st = self.users.get(user_id)
        hist, seen = self.user_view(st) if st is not None else ([], NO_ITEMS)
        cands: list[np.ndarray] = []
        cooc = _NO_COOC
        if "cooc" in cfg.sources and hist:
            cooc = self.cooc.score_history_arrays(hist)
            cands.append(np.asarray(_top_indices(cooc[1], cfg.n_cooc, cooc[0]), dtype=np.int64))
        if self._creator_on and st is not None and st.meta is not None:
            cands.append(self._creator_candidates(st.meta))
        profile = self._profile(hist)
        cached = self._cached_candidates(user_id, st) if cache else None
        return _RankInputs(user_id, st, hist, seen, cooc, cands, profile, cached)

    def _creator_candidates(self, meta: UserMeta) -> np.ndarray:
        """The newest videos of the creators the user watches most: a new video of a creator
        the user follows is the one cold video we know they may want, content or not."""
        s = self.settings
        top = meta.top_creators(5, s.creator_min_share)
        if not top:
            return _NO_ITEMS
        per = max(1, s.candidates_creator // len(top))
        recent = self.item_meta.recent
        out = [i for c in top for i in recent.get(c, ())[-per:]]
        return np.asarray(out, dtype=np.int64)

    def _rank_from(
        self,
        p: _RankInputs,
        k: int,
        cache: bool,
        content_found: list[int] | None,
        mf_found: np.ndarray | None = None,
    ) -> Ranked:
        """The rest of ``_rank``, given the content search's result (``None``: not searched)
        and, when already found, the factors' top items."""
        cfg, user_id, st, seen, cands = self.cfg, p.user_id, p.st, p.seen, p.cands
        if p.cached is None:
            content = (
                np.asarray(content_found, dtype=np.int64)
                if content_found is not None
                else _NO_ITEMS
            )
            if mf_found is not None:
                mf = mf_found
            elif "mf" in cfg.sources:
                mf = self.factors.top_items(user_id, cfg.n_mf, len(self.catalog))
            else:
                mf = _NO_ITEMS
            if cache and st is not None:
                self._keep_candidates(user_id, st, content, mf)
        else:
            content, mf = p.cached.content, p.cached.mf
        cands += [content, mf]
        seq = self._seq_scores(user_id, st)
        if seq is not None and cfg.n_seq > 0:
            masked = seq.copy()
            masked[seen] = -np.inf
            cands.append(np.asarray(_top_indices(masked, cfg.n_seq), dtype=np.int64))
        if "popular" in cfg.sources or not any(len(c) for c in cands):
            cands.append(self.popularity.trending(cfg.n_popular).astype(np.int64))
        items = np.unique(np.concatenate(cands)) if cands else np.zeros(0, dtype=np.int64)
        if len(seen) and len(items):
            items = items[~_in_sorted(items, seen)]
        if len(items) == 0:
            return Ranked(items, np.zeros(0, np.float32), np.zeros((0, len(SOURCES)), np.float32))
        feats = self._features(
            user_id, st, items, hist=p.hist, cooc=p.cooc, profile=p.profile, seq=seq
        )
        cold = self.popularity.views_of(items) < cfg.cold_views
        if not self.settings.cold_any_age:
            cold &= (self.now - self.catalog.published_at[items]) < cfg.fresh_s
        ranked = fuse_and_rank(items, feats, self.fusion, k, cfg, cold)
        ranked.history = p.hist
        return ranked

    def _cached_candidates(self, user_id: str, st: UserState | None) -> CachedCandidates | None:
        c = self._cands.get(user_id)
        if c is None or st is None:
            return None
        if (
            st.events - c.events >= self.settings.candidate_refresh_events
            or c.videos_version != self._videos_version
        ):
            return None
        self._cands.move_to_end(user_id)
        return c

    def _keep_candidates(
        self, user_id: str, st: UserState, content: np.ndarray, mf: np.ndarray
    ) -> None:
        s = self.settings
        if s.candidate_refresh_events <= 1 or s.candidate_cache_users == 0:
            return
        self._cands[user_id] = CachedCandidates(
            st.events, self._videos_version, content.astype(np.int32), mf.astype(np.int32)
        )
        self._cands.move_to_end(user_id)
        while len(self._cands) > s.candidate_cache_users:
            self._cands.popitem(last=False)

    def _content_candidates(self, profile: np.ndarray, st: UserState | None) -> list[int]:
        """Nearest videos to the user's content profile, overall and among fresh videos.

        The engine holds every vector it ranks with, so an exact numpy search over them finds
        the same candidates as an embedded index's exact search, 3-13 times faster (1.5k-100k
        videos, 2 cores: the index pays for a filter and a call per query). A Qdrant server is
        asked above ``memory_search_max`` videos: its HNSW is what scales to millions.
        """
        cfg = self.cfg
        if self._searches_in_memory():
            seen = self.user_view(st)[1] if st is not None else NO_ITEMS
            return self._content_candidates_in_memory(profile, seen)
        from workers.index import VideoIndexError

        ids = self.catalog.ids
        recent = st.ledger.seen_recent(seen_cap(self.settings), 200) if st is not None else []
        seen_list = [ids[i] for i in recent]

        try:
            found = self.index.search(profile, cfg.n_content, exclude_ids=seen_list)
            found += self.index.search(
                profile, cfg.n_fresh, exclude_ids=seen_list, min_published_at=self.now - cfg.fresh_s
            )
        except VideoIndexError as exc:
            # An outage of the vector backend must not cost the user their list (or the worker
            # its life): rank from the other sources, which need no index, and count it.
            self.degraded_searches += 1
            log.warning("content search failed, ranking without content candidates: %s", exc)
            return []
        out = []
        for vid, _ in found:
            i = self.catalog.get(vid)
            if i is not None:
                out.append(i)
        return out

    def _searches_in_memory(self) -> bool:
        return self.index is None or len(self.catalog) <= self._memory_search_max()

    def _memory_search_max(self) -> float:
        limit = self.settings.memory_search_max
        if limit is not None:
            return limit
        return 200_000 if getattr(self.index, "backend", None) == "server" else float("inf")

    def _content_candidates_in_memory(self, profile: np.ndarray, seen: np.ndarray) -> list[int]:
        """Exact search over the in-memory catalogue (cosine: its rows are unit vectors)."""
        n = len(self.catalog)
        if n == 0:
            return []
        return self._content_top(self.catalog.vectors[:n] @ profile, seen, self._fresh_pool())

    def _content_candidates_in_memory_many(
        self, profiles: np.ndarray, seens: Sequence[np.ndarray]
    ) -> list[list[int]]:
        """``_content_candidates_in_memory`` for a batch of profiles (rows): one matrix product."""
        n = len(self.catalog)
        if n == 0:
            return [[] for _ in seens]
        sims = profiles @ self.catalog.vectors[:n].T  # (users, videos): each user's row contiguous
        fresh = self._fresh_pool()
        return [self._content_top(row, seen, fresh) for row, seen in zip(sims, seens, strict=True)]

    def _fresh_pool(self) -> np.ndarray:
        """The videos the fresh content candidates come from (the same for every user)."""
        cat, cfg = self.catalog, self.cfg
        # published_at >= now - fresh_s, the index's own range filter, boundary included
        fresh = cat.published_since(self.now - cfg.fresh_s)
        if self.settings.cold_any_age:
            # videos almost nobody has watched yet, however old: content is their only way in
            n = len(cat)
            views = self.popularity.views
            cold = np.ones(n, dtype=bool)
            m = min(n, len(views))
            cold[:m] = views[:m] < cfg.cold_views
            cold[fresh] = True
            fresh = np.flatnonzero(cold)
        return fresh

    def _content_top(self, sims: np.ndarray, seen: np.ndarray, fresh: np.ndarray) -> list[int]:
        """The nearest and the nearest fresh videos, given a user's similarities (overwritten)."""
        cat, cfg = self.catalog, self.cfg
        if cat.without_content:
            sims[list(cat.without_content)] = -np.inf
        sims[seen] = -np.inf
        out = _top_indices(sims, cfg.n_content)
        return out + fresh[_top_indices(sims[fresh], cfg.n_fresh)].tolist()

    def _message(
        self, user_id: str, ranked: Ranked, ids: list[str], trigger: str | None, t0: float
    ) -> Recommendations:
        # Built with model_construct: every value comes from the engine itself, and validating
        # twenty nested models per event would cost more than ranking them.
        scores = np.round(ranked.scores.astype(np.float64), 6).tolist()
        cols = ranked.sources if self.seq is not None else ranked.sources[:, :4]
        rounded = np.round(cols.astype(np.float64), 6)
        items = recommended_items(ids, scores, rounded.tolist(), self._reasons(ranked, rounded))
        return Recommendations.model_construct(
            schema_version=SCHEMA_VERSION,
            kind="recommendations",
            user_id=user_id,
            items=items,
            trigger_event_id=trigger,
            generated_at=utcnow(),
            latency_ms=round((time.perf_counter() - t0) * 1000.0, 3),
            model={
                "engine": ENGINE_VERSION,
                "encoder": getattr(self.encoder, "name", "none"),
                "events": str(self.n_events),
            },
        )

    def _reasons(self, ranked: Ranked, sources: np.ndarray) -> list[Reason]:
        """Why each published item is there (the rule is ``schemas.messages.Reason``'s).

        Read from the scores as published (``sources``, rounded), so a reason never names a
        source whose score shows as zero. One kernel call for the list
        (``kernels.reason_sources``): only the list's own items are looked up in the history's
        co-count rows and compared with its vectors. Reasons are immutable and lists name the
        same few history items again and again, so they are kept (``_reason_memo``): a list's
        reasons then cost about one kernel call (3-4 % of an event, 1k-10k videos).
        """
        n = len(sources)
        hist = ranked.history
        if n == 0 or not hist:
            return [_TRENDING] * n
        cfg, cat, w = self.cfg, self.catalog, self.fusion.w
        fresh = ranked.fresh if len(ranked.fresh) == n else np.zeros(n, dtype=np.bool_)
        m = min(len(hist), max(cfg.profile_len, self.cooc.window))
        how, best = kernels.reason_sources(
            np.ascontiguousarray(sources),  # one layout, the one ``kernels.warm`` loads
            fresh,
            float(w[0]),
            float(w[1]),
            ranked.items,
            np.fromiter(chain.from_iterable(hist[:m]), np.float64, 3 * m).reshape(m, 3),
            cfg.profile_len,
            cat.has_content,
            cat.vectors,
            *self.cooc.kernel_args(),
        )
        memo = self._reason_memo
        if len(memo) > 8192:
            memo.clear()
            memo[-1] = _TRENDING
        # key: history item * 4 + how; trending (how 3, item -1) is -1
        out = [memo.get(k) or self._new_reason(k) for k in (best * 4 + how).tolist()]
        if self._creator_on and len(ranked.creator) == n:
            # "more from a creator you watch" where the creator adds most to the score
            by_creator = float(w[CREATOR_AT]) * ranked.creator
            for i in np.flatnonzero(
                (by_creator > 0)
                & (by_creator >= w[0] * sources[:, 0])
                & (by_creator >= w[1] * sources[:, 1])
            ).tolist():
                out[i] = self._creator_reason(int(self.item_meta.creator[ranked.items[i]]))
        return out

    def _creator_reason(self, code: int) -> Reason:
        key = -2 - code  # below the trending key (-1): no clash with history items
        r = self._reason_memo.get(key)
        if r is None:
            name = self.item_meta.creators.names[code]
            r = self._reason_memo[key] = trusted_reason(ReasonKind.CREATOR, creator=name)
        return r

    def _new_reason(self, key: int) -> Reason:
        item, how = divmod(key, 4)
        cat = self.catalog
        if how == 2:
            r = trusted_reason(ReasonKind.NEW_IN_TOPIC, cat.ids[item], topic=cat.category_of(item))
        else:
            r = trusted_reason(ReasonKind.WATCHED, cat.ids[item], "content" if how else "cooc")
        self._reason_memo[key] = r
        return r

    # -- snapshots --------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(),
            "sources": list(self.cfg.sources),
            "catalog": self.catalog.to_state(),
            "item_meta": self.item_meta.to_state(),
            "cooc": self.cooc.to_state(),
            "factors": self.factors.to_state(),
            "popularity": self.popularity.to_state(),
            "fusion": self.fusion.to_state(),
            "users": {u: st.to_state(self.catalog.ids) for u, st in self.users.items()},
            "user_meta": {
                u: st.meta.to_state(self.item_meta)
                for u, st in self.users.items()
                if st.meta is not None
            },
            "now": self.now,
            "n_events": self.n_events,
            "neg_pool": list(self._neg_pool),
            "seq": None if self.seq is None else self.seq.to_state(self.catalog.ids),
            "seq_pool": list(self._seq_pool),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], encoder: Any = None, index: Any = None) -> Engine:
        """Rebuild an engine; the index must already hold the videos (it is its own store)."""
        obj = cls(EngineSettings(**state["settings"]), encoder, index, sources=state["sources"])
        obj.catalog = Catalog.from_state(state["catalog"])
        obj.cooc = CoOccurrence.from_state(state["cooc"])
        obj.factors = Factors.from_state(state["factors"])
        obj.popularity = Popularity.from_state(state["popularity"])
        obj.fusion = Fusion.from_state(state["fusion"])
        obj.item_meta = ItemMeta.from_state(state.get("item_meta"))
        obj.users = {u: UserState.from_state(s, obj.item_index) for u, s in state["users"].items()}
        for u, m in state.get("user_meta", {}).items():
            obj.users[u].meta = UserMeta.from_state(m, obj.item_meta)
        obj.now = state["now"]
        obj.n_events = state["n_events"]
        obj._neg_pool = deque(state["neg_pool"], maxlen=5000)
        if state.get("seq") is not None and obj.seq is not None:
            from workers.sequential import SequentialModel

            obj.seq = SequentialModel.from_state(state["seq"], obj.catalog.get)  # type: ignore[arg-type]
        obj._seq_pool = OrderedDict.fromkeys(state.get("seq_pool", ()))
        return obj


_TRENDING = trusted_reason(ReasonKind.TRENDING)
_NO_COOC = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
_NO_ITEMS = np.zeros(0, dtype=np.int64)
_VISUAL_AT = FEATURES.index("visual")
_NO_META = UserMeta().held()  # a forget's receipt names the metadata statistics even when none


_MASK64 = (1 << 64) - 1


def _splitmix64(seed: int, n: int) -> list[int]:
    """``n`` pseudo-random 64-bit words from ``seed`` (SplitMix64): a seeded draw per event
    without building a numpy generator, which costs more than the rest of the negatives."""
    out = []
    for _ in range(n):
        seed = (seed + 0x9E3779B97F4A7C15) & _MASK64
        z = seed
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def _in_sorted(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """``np.isin`` for a sorted array of distinct values, without its per-call overhead."""
    if len(sorted_unique) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.searchsorted(sorted_unique, values)
    pos[pos == len(sorted_unique)] = 0
    return sorted_unique[pos] == values


def _top_indices(scores: np.ndarray, n: int, ids: np.ndarray | None = None) -> list[int]:
    """The (unordered) ``n`` best finite entries, as positions or as ``ids[position]``."""
    n = min(n, len(scores))
    if n == 0:
        return []
    top = np.argpartition(scores, len(scores) - n)[len(scores) - n :]
    top = top[np.isfinite(scores[top])]
    return (ids[top] if ids is not None else top).tolist()


def _payload(v: VideoPublished, published_at: float) -> dict[str, Any]:
    return {
        "video_id": v.video_id,
        "published_at": published_at,
        "title": v.title,
        "tags": list(v.tags),
        "category": v.category,
        "duration_s": v.duration_s,
        "language": v.language,
        "creator_id": v.creator_id,
    }
