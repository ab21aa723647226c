"""The server's local copy of the topics: each user's latest list, the catalogue's metadata and
content vectors, item co-counts and popularity, and the workers' stats.

``Store`` is pure (records in, queries out) and is tested without Kafka; ``StoreFeed`` adapts
it to one aiokafka consumer that reads *all* partitions of its topics with manual assignment
and no consumer group, so every copy of the server holds everything and copies scale out by
being started. Item state is rebuilt the way a worker rebuilds it, with the engine's own
``CoOccurrence`` and ``Popularity`` fed the ``item-deltas`` records, so trending and "more like
this" agree with what the workers rank by.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas import DecodeError, Recommendations, VideoPublished, decode
from schemas.wire import (
    ITEM_DELTAS,
    RECOMMENDATIONS,
    STATS,
    VIDEO_VECTORS,
    VIDEOS,
    decode_item_deltas,
    decode_video_vector,
)
from streams.serve.board import Board
from streams.serve.rules import Item, VideoMeta
from streams.wire.settings import KafkaSettings, aiokafka_kwargs
from streams.wire.topics import Topics, create_topics, partition_ids
from workers.cooc import CoOccurrence
from workers.decay import half_life_days
from workers.popularity import Popularity
from workers.settings import EngineSettings

log = logging.getLogger(__name__)

STORE_STAGES = (RECOMMENDATIONS, VIDEOS, VIDEO_VECTORS, ITEM_DELTAS, STATS)


@dataclass(slots=True)
class StoredList:
    """A user's latest published list, decoded once when it arrives (never per request)."""

    user_id: str
    items: list[Item]  # JSON-ready dicts, best first
    generated_at: str
    trigger_event_id: str | None
    published_ms: int  # the record's Kafka timestamp
    # cosine similarities among the items (for diversity), computed when the list arrives;
    # computed again at a request when some item had no vector then and vectors came since
    sims: np.ndarray | None = None
    sims_version: int = -1
    sims_complete: bool = False


class _Vectors:
    """Content vectors by video id, in one growing array (so MMR and similar are one matmul)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.ids: list[str] = []
        self.array: np.ndarray | None = None  # (capacity, dim) float32, unit rows
        self.has: np.ndarray = np.zeros(0, dtype=bool)
        self.version = 0  # vectors set so far

    def idx(self, video_id: str) -> int:
        """Index of ``video_id``, registering it (without a vector) when new."""
        i = self.index.get(video_id)
        if i is None:
            i = self.index[video_id] = len(self.ids)
            self.ids.append(video_id)
            self._grow(i + 1)
        return i

    def _grow(self, n: int) -> None:
        if n <= len(self.has):
            return
        cap = max(n, 2 * len(self.has), 256)
        has = np.zeros(cap, dtype=bool)
        has[: len(self.has)] = self.has
        self.has = has
        if self.array is not None:
            arr = np.zeros((cap, self.array.shape[1]), dtype=np.float32)
            arr[: len(self.array)] = self.array
            self.array = arr

    def set(self, video_id: str, vec: np.ndarray) -> None:
        """Store a vector; raises ``ValueError`` when its size differs from the first one's."""
        if self.array is None:
            self.array = np.zeros((len(self.has), len(vec)), dtype=np.float32)
        elif vec.shape != (self.array.shape[1],):
            raise ValueError(
                f"video {video_id}: vector of {vec.shape} where the store holds "
                f"{self.array.shape[1]}-d vectors (every worker must run the same encoder)"
            )
        i = self.idx(video_id)
        n = float(np.linalg.norm(vec))
        self.array[i] = vec / n if n > 0 else vec
        self.has[i] = True
        self.version += 1

    def rows(self, ids: Sequence[str]) -> np.ndarray | None:
        if self.array is None:
            return None
        out = np.zeros((len(ids), self.array.shape[1]), dtype=np.float32)
        get = self.index.get
        for j, vid in enumerate(ids):
            i = get(vid)
            if i is not None:
                out[j] = self.array[i]
        return out


class Store:
    """Records in (``apply``), queries out; bad records are counted and logged, never raised.

    Parameters
    ----------
    engine
        The workers' engine settings: co-occurrence window, caps and half-lives, so the store's
        item state decays as the workers' does.
    trending_size
        Items the trending list holds.
    board
        The dashboard's board, fed the ``stats`` records.
    """

    def __init__(
        self,
        engine: EngineSettings | None = None,
        trending_size: int = 50,
        board: Board | None = None,
    ) -> None:
        s = engine or EngineSettings()
        self.lists: dict[str, StoredList] = {}
        self.videos: dict[str, VideoMeta] = {}
        self.vectors = _Vectors()
        self.cooc = CoOccurrence(
            window=s.cooc_window,
            topk=s.cooc_topk,
            half_life_s=half_life_days(s.cooc_half_life_days),
        )
        self.popularity = Popularity(
            half_life_days(s.popularity_half_life_days), top_n=max(200, trending_size)
        )
        self.trending_size = trending_size
        self.board = board or Board()
        self.applied: Counter[str] = Counter()
        self.bad: Counter[str] = Counter()
        # readiness: (topic, partition) -> end offset at start / next offset to read
        self.targets: dict[tuple[str, int], int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.highwater: dict[tuple[str, int], int] = {}
        self.started = False  # the feed has fixed its targets
        self._trending: tuple[tuple[int, int, int], list[Item]] | None = None

    # -- records in ---------------------------------------------------------------------------
    def apply(self, stage: str, key: bytes | None, value: bytes | None, ts_ms: int = 0) -> bool:
        """Apply one record of ``stage``'s topic (``ts_ms``: its Kafka timestamp); False
        (counted, logged) when it is unreadable."""
        try:
            if stage == RECOMMENDATIONS:
                self._apply_list(key, value, ts_ms)
            elif stage == VIDEOS:
                if value is not None:
                    v = decode(value, expect=VideoPublished)
                    assert isinstance(v, VideoPublished)
                    self._apply_video(v)
            elif stage == VIDEO_VECTORS:
                if value is not None:
                    video, vec, _enc = decode_video_vector(value)
                    self._apply_video(video)
                    self.vectors.set(video.video_id, vec)
            elif stage == ITEM_DELTAS:
                if value is not None:
                    self._apply_deltas(value)
            elif stage == STATS:
                before = self.board.bad_records
                self.board.apply(value)
                if self.board.bad_records > before:
                    raise ValueError("not a worker_stats record")
            else:
                raise ValueError(f"the store reads no {stage!r} records")
        except (DecodeError, ValueError, KeyError, TypeError, AssertionError) as exc:
            self.bad[stage] += 1
            if self.bad[stage] <= 10 or self.bad[stage] % 1000 == 0:
                log.warning("store: skipped a bad %s record (%d so far): %s", stage,
                            self.bad[stage], str(exc).splitlines()[0][:300])  # fmt: skip
            return False
        self.applied[stage] += 1
        return True

    def _apply_list(self, key: bytes | None, value: bytes | None, ts_ms: int) -> None:
        if value is None:  # a tombstone: the user was forgotten
            if key is None:
                raise ValueError("a tombstone without a key")
            self.lists.pop(key.decode("utf-8", errors="replace"), None)
            return
        msg = decode(value, expect=Recommendations)
        assert isinstance(msg, Recommendations)
        lst = StoredList(
            msg.user_id,
            [it.model_dump(mode="json", exclude_none=True) for it in msg.items],
            msg.generated_at.isoformat(),
            msg.trigger_event_id,
            ts_ms,
        )
        self.list_sims(lst)  # here, once, rather than on the request path
        self.lists[msg.user_id] = lst

    def _apply_video(self, v: VideoPublished) -> None:
        self.videos[v.video_id] = VideoMeta(
            v.video_id,
            v.title,
            v.category,
            v.language,
            v.creator_id,
            v.published_at.timestamp(),
        )
        self.vectors.idx(v.video_id)

    def _apply_deltas(self, raw: bytes) -> None:
        """The item step of ``Engine.apply_item_deltas``, for co-counts and popularity only."""
        _origin, _user, _event, deltas = decode_item_deltas(raw)
        if deltas.sign not in (1, -1):
            raise ValueError(f"item deltas sign must be 1 or -1, got {deltas.sign!r}")
        idx, sign = self.vectors.idx, deltas.sign
        if deltas.cooc:
            self.cooc.apply_many((idx(a), idx(b), sign * amt, t) for a, b, amt, t in deltas.cooc)
        if deltas.popularity:
            pops = [(idx(v), amt, t) for v, amt, t in deltas.popularity]
            if sign > 0:
                self.popularity.apply_many(pops)
            else:
                self.popularity.subtract_many(pops)

    # -- readiness ----------------------------------------------------------------------------
    def set_targets(self, ends: dict[tuple[str, int], int]) -> None:
        """The end offsets at start: the store is ready once it has read up to each."""
        self.targets = dict(ends)
        self.started = True

    def note(self, topic: str, partition: int, next_offset: int, highwater: int | None) -> None:
        self.positions[(topic, partition)] = next_offset
        if highwater is not None:
            self.highwater[(topic, partition)] = highwater

    @property
    def ready(self) -> bool:
        return self.started and all(
            self.positions.get(tp, 0) >= end for tp, end in self.targets.items() if end > 0
        )

    @property
    def lag(self) -> int:
        """Records behind the latest known end of every partition (start targets until then)."""
        total = 0
        for tp, end in self.targets.items():
            hw = max(end, self.highwater.get(tp, 0))
            total += max(0, hw - self.positions.get(tp, 0))
        return total

    # -- queries ------------------------------------------------------------------------------
    def list_of(self, user_id: str) -> StoredList | None:
        return self.lists.get(user_id)

    def vectors_of(self, ids: Sequence[str]) -> np.ndarray | None:
        return self.vectors.rows(ids)

    def list_sims(self, lst: StoredList) -> np.ndarray | None:
        """Cosine similarities among a list's items (unit rows, zeros for unknown vectors),
        kept on the list: diversity re-ranks the same 20 items on every request."""
        v = self.vectors
        if not lst.sims_complete and lst.sims_version != v.version:
            ids = [it["video_id"] for it in lst.items]
            rows = v.rows(ids)
            lst.sims = None if rows is None else rows @ rows.T
            lst.sims_version = v.version
            # a video's vector never changes: once every item has one, the matrix is final
            lst.sims_complete = all((i := v.index.get(vid)) is not None and v.has[i] for vid in ids)
        return lst.sims

    def settle(self) -> int:
        """Once caught up: the similarity matrix of every list whose items' vectors were read
        after it (one consumer reads all topics interleaved), so no request pays for it.
        Returns how many were computed."""
        v, n = self.vectors, 0
        for lst in self.lists.values():
            if not lst.sims_complete and lst.sims_version != v.version:
                self.list_sims(lst)
                n += 1
        return n

    def trending(self, n: int | None = None) -> list[Item]:
        """The most popular videos now, best first, as items with the reason ``trending``."""
        n = self.trending_size if n is None else n
        version = (n, self.applied[ITEM_DELTAS], len(self.vectors.ids))
        if self._trending is not None and self._trending[0] == version:
            return self._trending[1]
        items = self._trending_now(n)
        self._trending = (version, items)
        return items

    def _trending_now(self, n: int) -> list[Item]:
        top = self.popularity.trending(n)
        if not len(top):
            return []
        scores = self.popularity.normalised(top)
        ids = self.vectors.ids
        return [
            {
                "video_id": ids[i],
                "score": round(float(s), 6),
                "sources": {"popular": round(float(s), 6)},
                "reason": {"kind": "trending"},
            }
            for i, s in zip(top.tolist(), scores.tolist(), strict=True)
        ]

    def similar(self, video_id: str, k: int, cooc_weight: float = 0.5) -> list[Item] | None:
        """Videos like ``video_id``: ``(1 - w) * content cosine + w * co-occurrence`` (scaled so
        its best neighbour scores 1); None when the video is unknown.
        """
        i = self.vectors.index.get(video_id)
        if i is None:
            return None
        n = len(self.vectors.ids)
        cos = np.zeros(n, dtype=np.float64)
        arr = self.vectors.array
        if arr is not None and self.vectors.has[i]:
            cos = (arr[:n] @ arr[i]).astype(np.float64)
            cos[~self.vectors.has[:n]] = 0.0
        co = np.zeros(n, dtype=np.float64)
        neigh = self.cooc.neighbours(i)
        if neigh:
            keys = np.fromiter(neigh.keys(), dtype=np.int64, count=len(neigh))
            vals = np.fromiter(neigh.values(), dtype=np.float64, count=len(neigh))
            ok = keys < n
            top = vals.max()
            if top > 0:
                co[keys[ok]] = vals[ok] / top
        score = (1.0 - cooc_weight) * cos + cooc_weight * co
        score[i] = -np.inf
        m = min(k, n - 1)
        if m <= 0:
            return []
        best = np.argpartition(-score, m - 1)[:m]
        best = best[np.argsort(-score[best], kind="stable")]
        ids = self.vectors.ids
        return [
            {
                "video_id": ids[j],
                "score": round(float(score[j]), 6),
                "sources": {"content": round(float(cos[j]), 6), "cooc": round(float(co[j]), 6)},
            }
            for j in best.tolist()
            if score[j] > 0
        ]


class StoreFeed:
    """The async loop that feeds a ``Store`` from Kafka: one consumer, every partition of the
    store's topics assigned by hand, read from the beginning.

    ``on_list(seconds)`` is told, per list applied, how long after its Kafka timestamp it
    became visible (the server's ``vidrec_serve_list_visible_seconds``).
    """

    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        topics: Topics,
        fetch_max_wait_ms: int = 100,
        on_list: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        self.topics = topics
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.on_list = on_list
        self.stage_of = {topics.name(s): s for s in STORE_STAGES}
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        loop = asyncio.get_running_loop()
        if self.topics.settings.auto_create:
            await loop.run_in_executor(None, create_topics, self.kafka, self.topics)
        ids = await loop.run_in_executor(None, partition_ids, self.kafka, list(self.stage_of))
        missing = sorted(set(self.stage_of) - set(ids))
        if missing:
            raise RuntimeError(f"topics {missing} are missing: run 'vidrec topics create'")
        tps = [TopicPartition(t, p) for t in self.stage_of for p in ids[t]]
        self._consumer = c = AIOKafkaConsumer(
            **aiokafka_kwargs(self.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.fetch_max_wait_ms,
        )
        await c.start()
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps)
        self.store.set_targets({(tp.topic, tp.partition): end for tp, end in ends.items()})
        self._task = asyncio.create_task(self._run(), name="vidrec-serve-store")

    async def _run(self) -> None:
        c, store, stage_of = self._consumer, self.store, self.stage_of
        frozen = False
        try:
            while True:
                batch = await c.getmany(timeout_ms=200, max_records=1000)
                for tp, records in batch.items():
                    stage = stage_of[tp.topic]
                    for r in records:
                        ok = store.apply(stage, r.key, r.value, r.timestamp)
                        if ok and stage == RECOMMENDATIONS and self.on_list is not None:
                            if r.value is not None and store.ready:
                                self.on_list(time.time() - r.timestamp / 1000.0)
                    store.note(tp.topic, tp.partition, records[-1].offset + 1, c.highwater(tp))
                if batch:
                    await asyncio.sleep(0)  # let requests in between big catch-up batches
                if not frozen and store.ready:
                    store.settle()
                    # what catch-up loaded lives as long as the server: keep the cyclic GC
                    # from walking it again and again (its full passes are the p99's spikes)
                    gc.freeze()
                    frozen = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a dead feed must show: /readyz turns 503, and it is logged
            log.exception("the store's consumer failed")
            self.error = exc
            store.started = False

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer is not None:
            await self._consumer.stop()
