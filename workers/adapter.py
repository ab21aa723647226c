"""The faust agents of a worker and the adapter they call: decode a record, call the engine, send.

``EngineAdapter`` holds everything between a Kafka record and the engine and knows nothing of
faust or of a broker: it turns records into engine calls and engine results into ``Out`` records
(topic stage, key, value, headers). The agents in ``register_agents`` are a few lines each: they
take records off a faust stream, hand them to the adapter, and send what it returns. So the same
engine functions run here as in the embedded loop (``workers.embedded.drive``).

Per user event the adapter

1. decodes and validates it (a failure becomes a dead letter, and processing carries on);
2. loads the user's snapshot from the worker's table when this engine does not hold the user
   (a restarted worker, or a partition that moved here from another worker);
3. runs the engine's user step, applies the item deltas to its own engine and ships them
   (``item-deltas``) for every other worker;
4. publishes the user's fresh list (``recommendations``), with the trigger's Kafka timestamp
   in a header for end-to-end latency, and writes the user's snapshot back to the table.

Item state reaches every worker by replication (``on_replicated``): each applies all item
deltas but its own, and every embedded video with its vector.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np

from schemas import DecodeError, ForgetUser, UserEvent, VideoPublished, decode
from schemas.wire import (
    DEAD_LETTERS,
    ERASURES,
    ITEM_DELTAS,
    ORIGIN_HEADER,
    RECOMMENDATIONS,
    TRIGGER_TS_HEADER,
    USER_EVENTS,
    VIDEO_VECTORS,
    VIDEOS,
    DeadLetter,
    decode_item_deltas,
    decode_user_value,
    decode_video_record,
    encode_item_deltas,
    encode_user_value,
    encode_video_vector,
)
from workers.engine import Engine, Step
from workers.thumbnails import OUTCOMES, ThumbnailReader

log = logging.getLogger(__name__)
T = TypeVar("T")

# What the embed agent encodes to tell an encoder outage from one video it cannot encode.
_PROBE = VideoPublished(
    video_id="vidrec-encoder-probe",
    title="encoder probe",
    published_at=datetime(2026, 1, 1, tzinfo=UTC),
)


@dataclass(frozen=True, slots=True)
class Meta:
    """Where a record came from (for dead letters) and when it was produced (for latency)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Out:
    """A record to send: to the topic of ``stage`` (a ``streams.wire.topics`` stage name)."""

    stage: str
    key: bytes | None
    value: bytes | None  # None: a tombstone (compaction deletes the key)
    headers: dict[str, bytes] = field(default_factory=dict)


class EngineAdapter:
    """Records in, engine calls, records out; one per worker process, wrapping its engine.

    Parameters
    ----------
    engine
        The worker's engine (its own catalogue, item state and the users it owns).
    origin
        This process's id, stamped on the item deltas it ships, so that it skips its own
        deltas when they come back by replication. A new id per process start: a restarted
        worker starts from an empty engine and must re-apply what its predecessor shipped.
    delta_dedup
        How many applied event ids are remembered, so a redelivered event's deltas are added
        once per worker (bounded; older ids are forgotten first).
    thumbnails
        The reader of the videos' thumbnails (``workers.thumbnails``) for the embed agent;
        None: videos are published with their text vectors alone.
    """

    def __init__(
        self,
        engine: Engine,
        origin: str | None = None,
        delta_dedup: int = 100_000,
        thumbnails: ThumbnailReader | None = None,
    ) -> None:
        self.engine = engine
        self.thumbnails = thumbnails
        self.origin = origin or uuid.uuid4().hex
        self._origin_header = self.origin.encode()
        engine.applied.cap = delta_dedup
        self._user_partition: dict[str, int] = {}
        self._outboxes: dict[str, list[tuple[str, Out]]] = {}
        self._batch_outbox: dict[str, list[tuple[str, Out]]] | None = None
        self._returned: list[tuple[str, str]] = []  # (user, event) whose outputs went out
        self.counts: dict[str, int] = {
            "events": 0,
            "duplicates": 0,
            "resent": 0,
            "forgets": 0,
            "published": 0,
            "dead_letters": 0,
            "videos_embedded": 0,
            "videos_replicated": 0,
            "deltas_replicated": 0,
            "deltas_skipped": 0,
            "encode_retries": 0,
            "index_retries": 0,
            **{f"thumbnails_{o}": 0 for o in OUTCOMES},
        }

    # -- dead letters -----------------------------------------------------------------------
    def dead_letter(self, key: bytes | None, value: bytes | None, meta: Meta, reason: str) -> Out:
        self.counts["dead_letters"] += 1
        log.warning("dead letter %s[%s]@%s: %s", meta.topic, meta.partition, meta.offset, reason)
        dl = DeadLetter(meta.topic, meta.partition, meta.offset, reason, value, key, stage="decode")
        return Out(DEAD_LETTERS, key, dl.to_json())

    # -- user events ------------------------------------------------------------------------
    def on_user_record(
        self,
        key: bytes | None,
        value: bytes | None,
        meta: Meta,
        table: MutableMapping[bytes, bytes],
    ) -> list[Out]:
        """Handle one record of ``user-events``; returns the records to send.

        ``table`` maps a user id (bytes) to the user's snapshot and outbox
        (``schemas.wire.encode_user_value``); in a worker it is a faust table backed by a
        changelog topic, in a test any dict.

        A forget erases the user everywhere a worker holds them (``Engine.forget_step``): the
        user's state and factors; the table keeps only the tombstone (so redelivered older events
        are not learned again) and the forget's own outputs; the subtracting item deltas travel
        on ``item-deltas`` like the additions did; the user's last list gets a tombstone on the
        compacted ``recommendations`` topic; then the receipt goes to ``erasures``.

        The snapshot written for an event carries the event's own output records (its
        *outbox*), so that a redelivered event which the table already counts (a duplicate)
        sends them again instead of nothing: that is what makes a crash between the table
        write and the delivery of the outputs lose nothing (see ``register_agents``).
        """
        t0 = time.perf_counter()
        msg = self._accept(key, value, meta, table)
        if isinstance(msg, list):
            return msg
        return self._outputs(msg, meta, table, self.engine.step(msg, t0))

    def on_user_records(
        self,
        records: Sequence[tuple[bytes | None, bytes | None, Meta]],
        table: MutableMapping[bytes, bytes],
        before_write: Callable[[Meta], None] | None = None,
    ) -> list[Out]:
        """``on_user_record`` for a micro-batch, in order, with one engine call for its events.

        ``Engine.step_many`` learns each event in order and ranks the batch's users together
        (one content search for all of them). Every record still gets its own checks, dead
        letter, dedup, outputs and table write, in record order; ``before_write`` is called with
        a record's ``Meta`` just before its outputs and snapshot are made (the agent points its
        staged table at the record's partition there).
        """
        done: list[list[Out]] = []
        msgs: list[UserEvent | ForgetUser] = []
        t0s: list[float] = []
        at: list[tuple[int, Meta]] = []
        for key, value, meta in records:
            t0 = time.perf_counter()
            msg = self._accept(key, value, meta, table)
            if isinstance(msg, list):
                done.append(msg)
                continue
            at.append((len(done), meta))
            done.append([])
            msgs.append(msg)
            t0s.append(t0)
        steps = self.engine.step_many(msgs, t0s) if msgs else []
        for (i, meta), msg, step in zip(at, msgs, steps, strict=True):
            if before_write is not None:
                before_write(meta)
            done[i] = self._outputs(msg, meta, table, step)
        return [o for outs in done for o in outs]

    def _accept(
        self,
        key: bytes | None,
        value: bytes | None,
        meta: Meta,
        table: MutableMapping[bytes, bytes],
    ) -> UserEvent | ForgetUser | list[Out]:
        """Decode and check a record and load its user; a bad record is its dead letter."""
        try:
            msg = decode(value if value is not None else b"")
        except DecodeError as exc:
            return [self.dead_letter(key, value, meta, exc.reason)]
        if not isinstance(msg, UserEvent | ForgetUser):
            reason = f"kind {msg.kind!r} does not belong on {USER_EVENTS} (send it to {VIDEOS})"
            return [self.dead_letter(key, value, meta, reason)]
        user_key = msg.user_id.encode()
        if key != user_key:
            reason = (
                f"record key {key!r} is not the user_id {msg.user_id!r}: user events must be "
                "keyed by user so that one worker owns each user"
            )
            return [self.dead_letter(key, value, meta, reason)]
        self._user_partition[msg.user_id] = meta.partition
        self._warm(msg.user_id, user_key, table)
        if not isinstance(msg, ForgetUser):
            self.counts["events"] += 1
        return msg

    def _outputs(
        self,
        msg: UserEvent | ForgetUser,
        meta: Meta,
        table: MutableMapping[bytes, bytes],
        step: Step,
    ) -> list[Out]:
        """What a handled record sends, and its user's snapshot (with the outbox) in ``table``."""
        user_key = msg.user_id.encode()
        is_forget = isinstance(msg, ForgetUser)
        if step.duplicate:
            self.counts["duplicates"] += 1
            return self._resend(msg.user_id, step.output_id)
        if is_forget:  # the user's earlier outputs must not be sent again
            self._outboxes.pop(msg.user_id, None)
            if self._batch_outbox is not None:
                self._batch_outbox.pop(msg.user_id, None)
        outs = []
        if step.deltas is not None:
            value = encode_item_deltas(step.deltas, msg.user_id, step.output_id, self.origin)
            outs.append(Out(ITEM_DELTAS, user_key, value, {ORIGIN_HEADER: self._origin_header}))
        if step.recs is not None:
            headers = {}
            if meta.timestamp_ms is not None:
                headers[TRIGGER_TS_HEADER] = str(int(meta.timestamp_ms)).encode()
            outs.append(Out(RECOMMENDATIONS, user_key, step.recs.to_json(), headers))
        if step.receipt is not None:
            outs.append(Out(RECOMMENDATIONS, user_key, None))  # the list's tombstone
            outs.append(Out(ERASURES, user_key, step.receipt.to_json()))
        # after publish: the snapshot holds the head of the list just shown (fusion learns from it)
        self._save(msg.user_id, user_key, table, [(step.output_id, o) for o in outs])
        self._note_returned(msg.user_id, step.output_id)
        if is_forget:
            self._user_partition.pop(msg.user_id, None)
            self.counts["forgets"] += 1
            log.info("forgot a user: %s", step.receipt.erased if step.receipt else None)
        else:
            self.counts["published"] += 1
        return outs

    def begin_batch(self) -> None:
        """Start a micro-batch: a user's outbox collects the outputs of all of the batch's
        events of that user (the outputs of earlier batches are known to be delivered)."""
        self._batch_outbox = {}

    def end_batch(self) -> None:
        self._batch_outbox = None

    def delivered(self) -> None:
        """Every output returned so far is acknowledged by the broker: drop those outputs from
        the outboxes in memory, so a later duplicate of their event sends nothing. (The table
        still holds them until the user's next event; a restarted worker cannot know they were
        delivered, and sends them once more.) Outputs loaded from the table and not sent again
        yet stay: their events may still be redelivered."""
        for user_id, event_id in self._returned:
            box = self._outboxes.get(user_id)
            if box:
                box[:] = [(eid, o) for eid, o in box if eid != event_id]
        self._returned.clear()

    def _save(
        self,
        user_id: str,
        user_key: bytes,
        table: MutableMapping[bytes, bytes],
        outs: list[tuple[str, Out]],
    ) -> None:
        """Write the user's snapshot, with the outputs not yet known to be delivered."""
        if self._batch_outbox is not None:
            box = self._batch_outbox.setdefault(user_id, [])
            box.extend(outs)
        else:
            box = list(outs)
        self._outboxes[user_id] = box
        snap = self.engine.snapshot_user(user_id)
        assert snap is not None
        outbox = [(eid, o.stage, o.value, o.headers) for eid, o in box]
        table[user_key] = encode_user_value(snap, outbox)

    def _resend(self, user_id: str, event_id: str) -> list[Out]:
        """The outputs of an already counted event, if its snapshot still holds them.

        Item deltas are applied here first when this engine has not seen them (they may never
        have reached the topic); a list goes out again as it was built the first time.
        """
        outs = []
        for eid, o in self._outboxes.get(user_id, ()):
            if eid != event_id:
                continue
            if o.stage == ITEM_DELTAS:
                origin, _, _, deltas = decode_item_deltas(o.value)
                replicated = origin != self.origin
                if not self.engine.apply_once(user_id, event_id, deltas, replicated=replicated):
                    continue
            outs.append(o)
        if outs:
            self.counts["resent"] += len(outs)
            self._note_returned(user_id, event_id)
            if self._batch_outbox is not None:
                # not delivered before the batch's sends: a snapshot that a later event of the
                # batch writes must keep them, or a crash now leaves them nowhere
                self._batch_outbox.setdefault(user_id, []).extend((event_id, o) for o in outs)
        return outs

    def _note_returned(self, user_id: str, event_id: str) -> None:
        # bounded for callers that never call ``delivered``: an entry forgotten here only means
        # one more send of that event's outputs on a duplicate, never a lost one
        self._returned.append((user_id, event_id))
        if len(self._returned) > 10_000:
            del self._returned[:5_000]

    def _warm(self, user_id: str, user_key: bytes, table: MutableMapping[bytes, bytes]) -> None:
        """Load the user's snapshot when this engine does not hold the user."""
        if self.engine.holds_user(user_id):
            return
        raw = table.get(user_key)
        if raw is not None:
            snap, outbox = decode_user_value(raw)
            self.engine.restore_user(user_id, snap)
            self._outboxes[user_id] = [
                (eid, Out(stage, user_key, value, headers)) for eid, stage, value, headers in outbox
            ]

    def evict_partitions(self, partitions: Iterable[int]) -> int:
        """Drop from memory the users of partitions this worker no longer owns.

        Their snapshots live on in the table; if a partition comes back, its users are loaded
        from there again, never from a copy this worker held before another worker changed it.
        """
        gone = set(partitions)
        users = [u for u, p in self._user_partition.items() if p in gone]
        for u in users:
            self.engine.evict_user(u)
            self._outboxes.pop(u, None)
            del self._user_partition[u]
        return len(users)

    # -- videos -----------------------------------------------------------------------------
    def decode_videos(
        self, records: Sequence[tuple[bytes | None, bytes | None, Meta]]
    ) -> tuple[list[VideoPublished], list[Out]]:
        """Valid videos of a micro-batch, and dead letters for the rest."""
        videos: list[VideoPublished] = []
        bad: list[Out] = []
        for key, value, meta in records:
            try:
                msg = decode(value if value is not None else b"", expect=VideoPublished)
            except DecodeError as exc:
                bad.append(self.dead_letter(key, value, meta, exc.reason))
                continue
            assert isinstance(msg, VideoPublished)
            videos.append(msg)
        return videos, bad

    def encode_videos(self, videos: Sequence[VideoPublished]) -> np.ndarray:
        """The content vectors of a batch: the slow call, which a worker runs in an executor."""
        return self.engine.encoder.encode_many([v.text() for v in videos])

    def encode_or_isolate(
        self, videos: Sequence[VideoPublished]
    ) -> tuple[list[VideoPublished], np.ndarray, list[tuple[VideoPublished, str]]]:
        """Encode a batch; when it fails, tell an encoder outage from a video it cannot encode.

        A batch that fails is followed by a probe (a plain title). If the probe fails too, the
        encoder itself is down: the error propagates and the caller retries the whole batch
        with backoff. If the probe succeeds, the videos are encoded one by one and those that
        still fail are returned as ``(video, reason)`` for the dead-letter topic, so that one
        poison video cannot stall the embed agent forever.
        """
        try:
            return list(videos), self.encode_videos(videos), []
        except Exception as exc:
            try:
                self.encode_videos([_PROBE])
            except Exception:
                raise exc from None
        good: list[VideoPublished] = []
        vecs: list[np.ndarray] = []
        poison: list[tuple[VideoPublished, str]] = []
        for v in videos:
            try:
                vecs.append(self.encode_videos([v])[0])
                good.append(v)
            except Exception as exc:
                poison.append((v, f"the encoder fails on this video: {type(exc).__name__}: {exc}"))
        out = np.stack(vecs) if vecs else np.zeros((0, self.engine.dim), dtype=np.float32)
        return good, out, poison

    def poison_letters(
        self,
        records: Sequence[tuple[bytes | None, bytes | None, Meta]],
        poison: Sequence[tuple[VideoPublished, str]],
    ) -> list[Out]:
        """Dead letters for the videos the encoder fails on, with their original records."""
        by_key = {key: (key, value, meta) for key, value, meta in records}
        outs = []
        for video, reason in poison:
            key = video.video_id.encode()
            rec = by_key.get(key)
            if rec is None:  # a record keyed by something else: the video is the evidence
                rec = (key, video.to_json(), records[0][2])
            outs.append(self.dead_letter(*rec, reason))
        return outs

    def read_visuals(self, videos: Sequence[VideoPublished]) -> list[np.ndarray | None]:
        """The batch's thumbnail descriptors (None where missing, broken, huge or late), within
        the reader's timeout; blocking, so the embed agent runs it beside the encoder."""
        if self.thumbnails is None:
            return [None] * len(videos)
        out = self.thumbnails.read_many([v.thumbnail_url for v in videos])
        for o, n in self.thumbnails.counts.items():
            self.counts[f"thumbnails_{o}"] = n
        return out

    def video_vector_outs(
        self,
        videos: Sequence[VideoPublished],
        vectors: np.ndarray,
        visuals: Sequence[np.ndarray | None] | None = None,
    ) -> list[Out]:
        name = getattr(self.engine.encoder, "name", "")
        self.counts["videos_embedded"] += len(videos)
        vis = visuals if visuals is not None else [None] * len(videos)
        return [
            Out(
                VIDEO_VECTORS,
                v.video_id.encode(),
                encode_video_vector(v, vec, name, self.origin, visual),
            )
            for v, vec, visual in zip(videos, vectors, vis, strict=True)
        ]

    # -- replication (every worker, all partitions) -----------------------------------------
    def on_replicated(
        self,
        stage: str,
        values: Sequence[bytes | None],
        headers: Sequence[Sequence[tuple[str, bytes]]] | None = None,
    ) -> int:
        """Apply a batch from ``video-vectors`` or ``item-deltas``; returns how many applied.

        ``headers``: each record's Kafka headers, when known; an item-deltas record whose
        origin header is this worker's is skipped before it is decoded (it was applied here
        when it was made).
        """
        if stage == VIDEO_VECTORS:
            return self._apply_video_vectors(values)
        if stage == ITEM_DELTAS:
            return self._apply_item_deltas(values, headers)
        raise ValueError(f"nothing to replicate from {stage!r}")

    def _apply_video_vectors(self, values: Sequence[bytes | None]) -> int:
        videos: list[VideoPublished] = []
        vecs: list[np.ndarray] = []
        visuals: list[np.ndarray | None] = []
        mine = getattr(self.engine.encoder, "name", "")
        for raw in values:
            if raw is None:  # a compaction tombstone
                continue
            try:
                rec = decode_video_record(raw)
                video, vec, enc, visual = rec.video, rec.vector, rec.encoder, rec.visual
            except (ValueError, KeyError, TypeError, DecodeError) as exc:
                log.error("skipping an unreadable %s record: %s", VIDEO_VECTORS, exc)
                continue
            if vec.shape != (self.engine.dim,):
                log.error(
                    "skipping video %s: vector of %s from encoder %r, this worker's %r needs %d; "
                    "every worker of a deployment must run the same encoder",
                    video.video_id,
                    vec.shape,
                    enc,
                    mine,
                    self.engine.dim,
                )
                continue
            if visual is not None and (
                visual.shape != (self.engine.catalog.visual_dim,)
                or not np.isfinite(visual).all()
                or not visual.any()
            ):
                log.error(
                    "video %s: dropping a visual descriptor of shape %s (this worker's is %d); "
                    "the video goes on with its text vector",
                    video.video_id,
                    visual.shape,
                    self.engine.catalog.visual_dim,
                )
                visual = None
            videos.append(video)
            vecs.append(vec)
            visuals.append(visual)
        if videos:
            self.engine.on_videos(videos, vectors=np.stack(vecs), visuals=visuals)
            self.counts["videos_replicated"] += len(videos)
        return len(videos)

    def _apply_item_deltas(
        self,
        values: Sequence[bytes | None],
        headers: Sequence[Sequence[tuple[str, bytes]]] | None,
    ) -> int:
        n = 0
        own = self._origin_header
        for i, raw in enumerate(values):
            if raw is None:
                continue
            if headers is not None and (ORIGIN_HEADER, own) in headers[i]:
                self.counts["deltas_skipped"] += 1
                continue
            try:
                origin, user_id, event_id, deltas = decode_item_deltas(raw)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("skipping an unreadable %s record: %s", ITEM_DELTAS, exc)
                continue
            if origin == self.origin or not self.engine.apply_once(
                user_id, event_id, deltas, replicated=True
            ):
                self.counts["deltas_skipped"] += 1
                continue
            n += 1
        self.counts["deltas_replicated"] += n
        return n


# -- faust --------------------------------------------------------------------------------------
