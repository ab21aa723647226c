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

import hashlib
import logging
import sys
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import (
    SCHEMA_VERSION,
    ErasureReceipt,
    EventType,
    ForgetUser,
    Recommendations,
    RecommendedItem,
    SourceScores,
    UserEvent,
    VideoPublished,
    utcnow,
)
from workers.catalog import Catalog
from workers.cooc import CoOccurrence
from workers.decay import half_life_days
from workers.factors import Factors
from workers.popularity import Popularity
from workers.ranker import (
    FEATURES,
    SOURCES,
    Fusion,
    Ranked,
    RankerConfig,
    content_profile,
    featurise,
    fuse_and_rank,
)
from workers.settings import EngineSettings

ENGINE_VERSION = "vidrec-engine-1"

log = logging.getLogger(__name__)


def event_weights(settings: EngineSettings) -> dict[EventType, float]:
    return {t: float(getattr(settings, f"weight_{t.value}")) for t in EventType}


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class Ledger:
    """A user's accepted, weighted events, oldest first: what a forget subtracts again.

    Co-counts and popularity are sums of per-event contributions that depend only on the user's
    own event sequence, so keeping that sequence (24 bytes an event: the catalogue's own id
    string, the time and the weight) is enough to recompute exactly what the user added, without
    a copy of every co-count. Capped: beyond ``cap`` events the oldest are dropped, and their
    (long decayed) contributions can no longer be subtracted; ``dropped`` counts them.
    """

    __slots__ = ("items", "ts", "w", "dropped")

    def __init__(
        self,
        items: Iterable[str] = (),
        ts: Iterable[float] = (),
        w: Iterable[float] = (),
        dropped: int = 0,
    ) -> None:
        self.items: list[str] = list(items)
        self.ts = array("d", ts)
        self.w = array("d", w)
        self.dropped = dropped

    def append(self, vid: str, ts: float, w: float, cap: int) -> None:
        self.items.append(vid)
        self.ts.append(ts)
        self.w.append(w)
        over = len(self.items) - cap
        if over > 0:
            del self.items[:over], self.ts[:over], self.w[:over]
            self.dropped += over

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return zip(self.items, self.ts, self.w, strict=True)

    def to_state(self) -> dict[str, Any]:
        return {
            "items": list(self.items),
            "ts": list(self.ts),
            "w": list(self.w),
            "dropped": self.dropped,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any] | None) -> Ledger:
        if not s:
            return cls()
        return cls(s["items"], s["ts"], s["w"], s.get("dropped", 0))


def step_history(
    history: deque, vid: Any, ts: float, w: float, history_len: int
) -> tuple[bool, list[tuple[Any, float, float]]]:
    """How one positive event changes a user's history (most recent first), in place.

    Returns whether the event co-counts (``False`` when it only strengthens the item just
    watched: play -> complete -> like) and the history it co-counts with. Shared by the user
    step and by the forget, which replays the user's ledger through it to recompute exactly the
    co-counts the user contributed.
    """
    if history and history[0][0] == vid:
        _, hts, hw = history[0]
        history[0] = (vid, hts, max(hw, w))
        return False, []
    before = list(history)
    history.appendleft((vid, ts, w))
    while len(history) > history_len:
        history.pop()
    return True, before


class History:
    """A user's recent positive items as ``(video_id, ts, weight)``, most recent first.

    The deque-like part of the API the engine uses (``appendleft``, ``pop``, ``[i]``, iteration,
    ``len``), stored as a list of (interned) ids and two ``array('d')``: 24 bytes an entry
    instead of about 100 for a tuple of three objects. Stored oldest first, so that adding the
    newest item is an append.
    """

    __slots__ = ("_ids", "_ts", "_w")

    def __init__(self, items: Iterable[tuple[str, float, float]] = ()) -> None:
        rows = list(items)[::-1]
        self._ids: list[str] = [sys.intern(r[0]) for r in rows]
        self._ts = array("d", [r[1] for r in rows])
        self._w = array("d", [r[2] for r in rows])

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __getitem__(self, i: int) -> tuple[str, float, float]:
        j = len(self._ids) - 1 - i if i >= 0 else -1 - i
        if not 0 <= j < len(self._ids):
            raise IndexError("history index out of range")
        return self._ids[j], self._ts[j], self._w[j]

    def __setitem__(self, i: int, item: tuple[str, float, float]) -> None:
        j = len(self._ids) - 1 - i if i >= 0 else -1 - i
        if not 0 <= j < len(self._ids):
            raise IndexError("history index out of range")
        self._ids[j], self._ts[j], self._w[j] = sys.intern(item[0]), item[1], item[2]

    def __iter__(self) -> Iterator[tuple[str, float, float]]:
        return zip(reversed(self._ids), reversed(self._ts), reversed(self._w), strict=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History | deque | list):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"History({list(self)!r})"

    def appendleft(self, item: tuple[str, float, float]) -> None:
        self._ids.append(sys.intern(item[0]))
        self._ts.append(item[1])
        self._w.append(item[2])

    def pop(self) -> tuple[str, float, float]:
        """Remove and return the oldest item."""
        if not self._ids:
            raise IndexError("pop from an empty history")
        item = self._ids[0], self._ts[0], self._w[0]
        del self._ids[0], self._ts[0], self._w[0]
        return item


def seen_cap(settings: EngineSettings) -> int:
    """How many seen videos a user keeps: ten histories' worth, and at least 100."""
    return max(settings.history_len * 10, 100)


class Seen:
    """The videos a user has seen, oldest first, capped; re-seeing one moves it to the end.

    A list of the catalogue's interned id strings (a pointer each) rather than a dict: a user
    has a few dozen seen videos on average, where a dict costs about three times the memory.
    Membership is a scan of at most ``cap`` pointers, compared by identity first.
    """

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = [sys.intern(v) for v in dict.fromkeys(ids)]

    def touch(self, vid: str, cap: int) -> None:
        if vid in self._ids:
            self._ids.remove(vid)
        self._ids.append(vid)
        if len(self._ids) > cap:
            del self._ids[: len(self._ids) - cap]

    def __contains__(self, vid: object) -> bool:
        return vid in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __repr__(self) -> str:
        return f"Seen({self._ids!r})"


def _new_dedup() -> array:
    return array("Q")


@dataclass(slots=True)  # no per-instance __dict__: one is held per user
class UserState:
    """Everything held about one user; every collection is capped by a setting.

    Kept small because it is held for every user within the TTL: video ids are the interned
    strings the catalogue holds (a pointer each, see ``Catalog.add``), history times and
    weights and the event-id hashes are 8-byte machine words in arrays (``History``,
    ``array('Q')``) rather than Python objects.
    """

    history: History = field(default_factory=History)  # (video_id, ts, weight), newest first
    seen: Seen = field(default_factory=Seen)  # oldest first, capped
    dedup: array = field(default_factory=_new_dedup)  # hashes of recent event ids, oldest first
    last_recs: list[str] = field(default_factory=list)  # the last published list
    last_ts: float = 0.0
    events: int = 0
    forgotten_at: float | None = None  # events up to this time were erased: never relearn them
    ledger: Ledger = field(default_factory=Ledger)  # what a forget subtracts

    def to_state(self) -> dict[str, Any]:
        return {
            "forgotten_at": self.forgotten_at,
            "ledger": self.ledger.to_state(),
            "history": list(self.history),
            "seen": list(self.seen),
            "dedup": list(self.dedup),
            "last_recs": list(self.last_recs),
            "last_ts": self.last_ts,
            "events": self.events,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> UserState:
        intern = sys.intern
        return cls(
            History((v, t, w) for v, t, w in s["history"]),
            Seen(s["seen"]),
            array("Q", s["dedup"]),
            list(map(intern, s["last_recs"])),
            s["last_ts"],
            s["events"],
            s.get("forgotten_at"),
            Ledger.from_state(s.get("ledger")),
        )

    def has_event(self, h: int) -> bool:
        """Whether the event-id hash ``h`` is among the remembered ones (one numpy scan)."""
        if not self.dedup:
            return False
        return bool((np.frombuffer(self.dedup, dtype=np.uint64) == np.uint64(h)).any())

    def remember_event(self, h: int, cap: int) -> None:
        self.dedup.append(h)
        if len(self.dedup) > cap:
            del self.dedup[: len(self.dedup) - cap]


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


@dataclass
class ItemDeltas:
    """Item-side effects of one user event, naming items by video id (safe to ship anywhere)."""

    cooc: list[tuple[str, str, float, float]] = field(default_factory=list)
    popularity: list[tuple[str, float, float]] = field(default_factory=list)
    factors: list[tuple[str, list[float], float]] = field(default_factory=list)
    fusion: list[float] | None = None
    ts: float = 0.0
    sign: int = 1  # -1: subtract the cooc and popularity increments (a forgotten user's)
    # the positive item of a learned event: every worker adds it to its negative-sampling pool,
    # so a restarted worker (or any other) samples negatives from the same pool as this one
    positive: str | None = None

    def is_empty(self) -> bool:
        return not (self.cooc or self.popularity or self.factors or self.fusion is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cooc": self.cooc,
            "popularity": self.popularity,
            "factors": self.factors,
            "fusion": self.fusion,
            "ts": self.ts,
            "sign": self.sign,
            "positive": self.positive,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ItemDeltas:
        return cls(
            [tuple(x) for x in d["cooc"]],
            [tuple(x) for x in d["popularity"]],
            [(a, list(g), b) for a, g, b in d["factors"]],
            d.get("fusion"),
            d.get("ts", 0.0),
            int(d.get("sign", 1)),
            d.get("positive"),
        )


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
        self.encoder = encoder
        self.index = index
        self.dim = encoder.dim if encoder is not None else 384
        self.weights = event_weights(s)
        self.cfg = RankerConfig(
            sources=tuple(sources),
            fresh_s=half_life_days(s.fresh_days),
        )
        self.catalog = Catalog(self.dim)
        self.cooc = CoOccurrence(
            window=s.cooc_window,
            topk=s.cooc_topk,
            half_life_s=half_life_days(s.cooc_half_life_days),
        )
        self.factors = Factors(dim=s.factors_dim, content_dim=self.dim, seed=s.seed)
        self.popularity = Popularity(half_life_days(s.popularity_half_life_days))
        if features is None:
            features = [f for f in FEATURES if self._feature_on(f)]
        self.fusion = Fusion(lr=0.02 if learn_fusion else 0.0, enabled=features)
        self.users: dict[str, UserState] = {}
        self.now = 0.0
        self.n_events = 0
        self._neg_pool: deque[int] = deque(maxlen=5000)
        # content searches that failed (Qdrant down or slow): those lists were ranked without
        # content candidates instead of failing the event
        self.degraded_searches = 0
        self._cands: OrderedDict[str, CachedCandidates] = OrderedDict()
        self._videos_version = 0
        self._since_sweep = 0

    def _feature_on(self, f: str) -> bool:
        src = set(self.cfg.sources)
        needs = {
            "cooc": {"cooc"},
            "content": {"content"},
            "mf": {"mf"},
            "popular": {"popular"},
            "recent": {"popular"},
            "fresh_content": {"content"},
            "pop_content": {"popular", "content"},
        }[f]
        return needs <= src

    # -- videos -----------------------------------------------------------------------------
    def on_video(self, video: VideoPublished) -> None:
        self.on_videos([video])

    def on_videos(
        self, videos: Sequence[VideoPublished], vectors: np.ndarray | None = None
    ) -> None:
        """Embed a batch of videos (one encoder call) and make them recommendable at once."""
        if not videos:
            return
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
        self._videos_version += 1
        if self.index is not None:
            self.index.upsert_many(
                [v.video_id for v in videos],
                vectors,
                [_payload(v, p) for v, p in zip(videos, pubs, strict=True)],
            )
        for v, vec, pub in zip(videos, vectors, pubs, strict=True):
            new = self.catalog.get(v.video_id) is None
            idx = self.catalog.add(v.video_id, pub)
            same = self.catalog.has_content[idx] and np.array_equal(self.catalog.vectors[idx], vec)
            self.catalog.set_content(idx, vec, pub)
            if new:
                self.factors.add_item(idx, vec if self.encoder is not None else None, v.video_id)
            elif not same:  # a redelivered video must not blend its content in again
                self.factors.set_content(idx, vec)

    # -- user events ------------------------------------------------------------------------
    def on_event(self, event: UserEvent) -> Recommendations | None:
        """Learn from one event and return the user's fresh list; ``None`` for a duplicate."""
        t0 = time.perf_counter()
        deltas = self.user_step(event)
        if deltas is None:
            return None
        self.apply_item_deltas(deltas)
        return self.publish(event.user_id, event.event_id, t0)

    def publish(self, user_id: str, trigger_event_id: str | None, t0: float) -> Recommendations:
        """Rank for the user, remember the head of the list, and build the message."""
        ranked = self._rank(user_id, self.settings.k, cache=True)
        st = self.users.get(user_id)
        ids = [self.catalog.ids[i] for i in ranked.items]
        if st is not None:
            st.last_recs = ids
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
        h = _hash64(event.event_id)
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
        vid = sys.intern(event.video_id)
        if w == 0:
            return deltas
        if self.catalog.get(vid) is None:
            # An event may precede its video (or the video never arrives): learn behaviour now,
            # content joins when the video does.
            idx = self.catalog.add(vid, ts)
            self.factors.add_item(idx, None, vid)
        idx = self.catalog.get(vid)
        assert idx is not None
        vid = self.catalog.ids[idx]  # the catalogue's own string: the ledger shares it
        st.ledger.append(vid, ts, w, s.erase_ledger_len)
        deltas.popularity.append((vid, w, ts))
        if w < 0:
            self._mark_seen(st, vid)
            return deltas
        if st.history and st.history[0][0] == vid:
            # A further positive action on the item just watched (play -> complete -> like)
            # strengthens it in place instead of co-counting the item with itself.
            step_history(st.history, vid, ts, w, s.history_len)
            return deltas
        if st.last_recs and self.fusion.lr > 0:
            grad = self._fusion_gradient(event.user_id, st, idx)
            deltas.fusion = grad.tolist() if grad is not None else None
        deltas.cooc.extend(self.cooc.deltas_one(list(st.history), vid, ts, w))
        negs = self._negatives(event.event_id, st, idx)
        u, fdeltas = self.factors.deltas_one(
            event.user_id,
            idx,
            negs,
            weight=w,
        )
        self.factors.users[event.user_id] = u
        deltas.factors = [(self.catalog.ids[i], g.tolist(), float(b)) for i, g, b in fdeltas]
        self._neg_pool.append(idx)
        deltas.positive = vid
        step_history(st.history, vid, ts, w, s.history_len)
        self._mark_seen(st, vid)
        return deltas

    def _mark_seen(self, st: UserState, vid: str) -> None:
        st.seen.touch(vid, seen_cap(self.settings))

    def _negatives(self, event_id: str, st: UserState, pos: int, n: int = 4) -> list[int]:
        """Popularity-proportional negatives (items of recent events), seeded by the event id."""
        pool = self._neg_pool
        if not pool:
            return []
        rng = np.random.default_rng(_hash64(f"{self.settings.seed}:{event_id}"))
        picks = rng.integers(0, len(pool), size=n * 2)
        out = []
        for p in picks:
            j = pool[int(p)]
            if j != pos and self.catalog.ids[j] not in st.seen:
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
        cat = self.catalog

        def idx(vid: str) -> int:
            i = cat.get(vid)
            if i is None:
                i = cat.add(vid, deltas.ts)
                self.factors.add_item(i, None, vid)
            return i

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
            self.fusion.apply(np.asarray(deltas.fusion, dtype=np.float32))
        if replicated and deltas.positive is not None:
            self._neg_pool.append(idx(deltas.positive))

    def _fusion_gradient(self, user_id: str, st: UserState, pos: int) -> np.ndarray | None:
        """The item the user picked should have outscored the items we ranked above it.

        Only items of the list we showed are compared: they went through the same candidate
        generation, so their features are comparable. An item we never showed says nothing
        about how to weigh the sources against each other (it only says that candidate
        generation missed it), so it teaches the fusion nothing.
        """
        vid = self.catalog.ids[pos]
        if vid not in st.last_recs:
            return None
        above = st.last_recs[: st.last_recs.index(vid)]
        negs = [i for i in (self.catalog.get(v) for v in above) if i is not None]
        if not negs:
            return None
        items = np.array([pos, *negs], dtype=np.int64)
        feats = self._features(user_id, st, items)
        return self.fusion.gradient(feats[0], feats[1:])

    # -- expiry -----------------------------------------------------------------------------
    def expire_idle_users(self, keep: str | None = None) -> list[str]:
        """Drop users idle for ``user_ttl_days`` of stream time, with their factors; return them.

        Called from ``user_step`` once per ``max(1000, users)`` events, so the sweep costs O(1)
        per event and the user table stays bounded by the users active within the TTL. Expiry
        is not forgetting: what the user taught the items (co-counts, popularity, item
        factors) stays, and a user who comes back starts afresh. Tombstones of forgotten users
        stay: they are what stops a redelivery of erased events from being learned again.
        ``keep`` is never dropped (the user whose event is being handled, however late it is).
        """
        self._since_sweep = 0
        cutoff = self.now - self.settings.user_ttl_days * 86400.0
        idle = [
            u
            for u, st in self.users.items()
            if st.forgotten_at is None and st.last_ts < cutoff and u != keep
        ]
        for u in idle:
            del self.users[u]
            self.factors.forget_user(u)
            self.drop_cached(u)
        return idle

    def drop_cached(self, user_id: str) -> None:
        """Drop what is derived from the user's state (for a user removed or replaced)."""
        self._cands.pop(user_id, None)

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
        self.drop_cached(msg.user_id)
        had_factors = self.factors.forget_user(msg.user_id)
        requested = msg.ts.timestamp()
        self.users[msg.user_id] = UserState(forgotten_at=requested)
        deltas = ItemDeltas(ts=self.now, sign=-1)
        dropped = 0
        if st is not None:
            deltas.cooc, deltas.popularity = self.contributions(st.ledger)
            dropped = st.ledger.dropped
        kept = [
            "item factors and fusion weights: learned by SGD, where each event's step depends "
            "on everything learned before it, so they cannot be subtracted; the user's own "
            "factor vector is deleted and what items learned from it fades as others' events "
            "overwrite it",
        ]
        if dropped:
            kept.append(
                f"co-counts and popularity of the user's {dropped} oldest events, beyond the "
                f"ledger of {self.settings.erase_ledger_len}: decayed, but still counted"
            )
        receipt = ErasureReceipt(
            user_id=msg.user_id,
            requested_at=msg.ts,
            erased_at=utcnow(),
            erased={
                "events": st.events if st else 0,
                "history_items": len(st.history) if st else 0,
                "seen_items": len(st.seen) if st else 0,
                "dedup_ids": len(st.dedup) if st else 0,
                "cached_recommendations": len(st.last_recs) if st else 0,
                "factors": int(had_factors),
                "ledger_events": len(st.ledger) if st else 0,
                "cooc_increments": len(deltas.cooc),
                "popularity_increments": len(deltas.popularity),
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
        for vid, ts, w in ledger:
            pop.append((vid, w, ts))
            if w <= 0:
                continue
            counts, before = step_history(history, vid, ts, w, self.settings.history_len)
            if counts:
                cooc.extend(self.cooc.deltas_one(before, vid, ts, w))
        return cooc, pop

    # -- ranking (reads state, never creates any) -------------------------------------------
    def recommend(self, user_id: str, k: int | None = None) -> Recommendations:
        t0 = time.perf_counter()
        ranked = self._rank(user_id, k or self.settings.k)
        ids = [self.catalog.ids[i] for i in ranked.items]
        return self._message(user_id, ranked, ids, None, t0)

    def _history_idx(self, st: UserState | None) -> list[tuple[int, float, float]]:
        if st is None:
            return []
        out = []
        for vid, ts, w in st.history:
            i = self.catalog.get(vid)
            if i is not None:
                out.append((i, ts, w))
        return out

    def _features(
        self,
        user_id: str,
        st: UserState | None,
        items: np.ndarray,
        hist: list[tuple[int, float, float]] | None = None,
        cooc: dict[int, float] | None = None,
        profile: np.ndarray | None = None,
    ) -> np.ndarray:
        cfg = self.cfg
        if hist is None:
            hist = self._history_idx(st)
        if cooc is None:
            cooc = self.cooc.score_history_arrays(hist) if "cooc" in cfg.sources else _NO_COOC
        if profile is None and "content" in cfg.sources:
            profile = content_profile(
                self.catalog.vectors,
                self.catalog.has_content,
                hist,
                cfg.profile_len,
                cfg.profile_decay,
            )
        mf = (
            self.factors.score_many(user_id, items)
            if "mf" in cfg.sources
            else np.zeros(len(items), dtype=np.float32)
        )
        pop = (
            self.popularity.normalised(items)
            if "popular" in cfg.sources
            else np.zeros(len(items), dtype=np.float32)
        )
        return featurise(
            items,
            now=self.now,
            cooc=cooc,
            profile=profile,
            vectors=self.catalog.vectors,
            published_at=self.catalog.published_at,
            mf=mf,
            popular=pop,
            cfg=cfg,
        )

    def _rank(self, user_id: str, k: int, cache: bool = False) -> Ranked:
        """Rank candidates for the user; ``cache`` reuses (and keeps) the user's candidate sets."""
        cfg = self.cfg
        st = self.users.get(user_id)
        hist = self._history_idx(st)
        seen_ids = st.seen if st is not None else {}
        cands: list[np.ndarray] = []
        cooc = _NO_COOC
        if "cooc" in cfg.sources and hist:
            cooc = self.cooc.score_history_arrays(hist)
            cands.append(np.asarray(_top_indices(cooc[1], cfg.n_cooc, cooc[0]), dtype=np.int64))
        profile = None
        if "content" in cfg.sources and hist:
            profile = content_profile(
                self.catalog.vectors,
                self.catalog.has_content,
                hist,
                cfg.profile_len,
                cfg.profile_decay,
            )
        cached = self._cached_candidates(user_id, st) if cache else None
        if cached is None:
            content = (
                np.asarray(self._content_candidates(profile, seen_ids), dtype=np.int64)
                if profile is not None
                else _NO_ITEMS
            )
            mf = (
                self.factors.top_items(user_id, cfg.n_mf, len(self.catalog))
                if "mf" in cfg.sources
                else _NO_ITEMS
            )
            if cache and st is not None:
                self._keep_candidates(user_id, st, content, mf)
        else:
            content, mf = cached.content, cached.mf
        cands += [content, mf]
        if "popular" in cfg.sources or not any(len(c) for c in cands):
            cands.append(self.popularity.trending(cfg.n_popular).astype(np.int64))
        items = np.unique(np.concatenate(cands)) if cands else np.zeros(0, dtype=np.int64)
        if seen_ids and len(items):
            get = self.catalog.get
            seen = np.array([i for i in map(get, seen_ids) if i is not None], dtype=np.int64)
            items = items[~np.isin(items, seen)]
        if len(items) == 0:
            return Ranked(items, np.zeros(0, np.float32), np.zeros((0, len(SOURCES)), np.float32))
        feats = self._features(user_id, st, items, hist=hist, cooc=cooc, profile=profile)
        cold = ((self.now - self.catalog.published_at[items]) < cfg.fresh_s) & (
            self.popularity.views_of(items) < cfg.cold_views
        )
        return fuse_and_rank(items, feats, self.fusion, k, cfg, cold)

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

    def _content_candidates(self, profile: np.ndarray, seen: Iterable[str]) -> list[int]:
        """Nearest videos to the user's content profile, overall and among fresh videos.

        The engine holds every vector it ranks with, so an exact numpy search over them finds
        the same candidates as an embedded index's exact search, 3-13 times faster (1.5k-100k
        videos, 2 cores: the index pays for a filter and a call per query). A Qdrant server is
        asked above ``memory_search_max`` videos: its HNSW is what scales to millions.
        """
        cfg = self.cfg
        seen_list = list(seen)[-200:]
        if self.index is None or len(self.catalog) <= self._memory_search_max():
            return self._content_candidates_in_memory(profile, seen_list)
        from workers.index import VideoIndexError

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

    def _memory_search_max(self) -> float:
        limit = self.settings.memory_search_max
        if limit is not None:
            return limit
        return 200_000 if getattr(self.index, "backend", None) == "server" else float("inf")

    def _content_candidates_in_memory(self, profile: np.ndarray, seen: list[str]) -> list[int]:
        """Exact search over the in-memory catalogue (cosine: its rows are unit vectors)."""
        cat, cfg = self.catalog, self.cfg
        n = len(cat)
        if n == 0:
            return []
        sims = cat.vectors[:n] @ profile
        sims[~cat.has_content[:n]] = -np.inf
        for v in seen:
            i = cat.get(v)
            if i is not None:
                sims[i] = -np.inf
        out = _top_indices(sims, cfg.n_content)
        # published_at >= now - fresh_s, the index's own range filter, boundary included
        fresh = np.where(cat.published_at[:n] >= self.now - cfg.fresh_s, sims, -np.inf)
        return out + _top_indices(fresh, cfg.n_fresh)

    def _message(
        self, user_id: str, ranked: Ranked, ids: list[str], trigger: str | None, t0: float
    ) -> Recommendations:
        # Built with model_construct: every value comes from the engine itself, and validating
        # twenty nested models per event would cost more than ranking them.
        scores = np.round(ranked.scores.astype(np.float64), 6).tolist()
        sources = np.round(ranked.sources.astype(np.float64), 6).tolist()
        items = [
            RecommendedItem.model_construct(
                video_id=vid,
                score=sc,
                sources=SourceScores.model_construct(
                    content=s[1], cooc=s[0], mf=s[2], popular=s[3]
                ),
            )
            for vid, sc, s in zip(ids, scores, sources, strict=True)
        ]
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

    # -- snapshots --------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(),
            "sources": list(self.cfg.sources),
            "catalog": self.catalog.to_state(),
            "cooc": self.cooc.to_state(),
            "factors": self.factors.to_state(),
            "popularity": self.popularity.to_state(),
            "fusion": self.fusion.to_state(),
            "users": {u: st.to_state() for u, st in self.users.items()},
            "now": self.now,
            "n_events": self.n_events,
            "neg_pool": list(self._neg_pool),
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
        obj.users = {u: UserState.from_state(s) for u, s in state["users"].items()}
        obj.now = state["now"]
        obj.n_events = state["n_events"]
        obj._neg_pool = deque(state["neg_pool"], maxlen=5000)
        return obj


_NO_COOC = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
_NO_ITEMS = np.zeros(0, dtype=np.int64)


def _top_indices(scores: np.ndarray, n: int, ids: np.ndarray | None = None) -> list[int]:
    """The (unordered) ``n`` best finite entries, as positions or as ``ids[position]``."""
    n = min(n, len(scores))
    if n == 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
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
