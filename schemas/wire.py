"""vidrec's internal wire: stage names, dead letters, item deltas, and the codecs of the two
internal topics (``item-deltas``, ``video-vectors``).

These are what workers send each other. They live here, below the engine and the streaming
layer, so that both can speak them without importing each other. Topic *names* (with the
deployment's prefix) are built in ``streams.wire.topics`` from the stage names below.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from schemas.messages import VideoPublished, decode

# The stages of the system, one topic each (see ``streams.wire.topics`` for keys and cleanup).
VIDEOS = "videos"
USER_EVENTS = "user-events"
RECOMMENDATIONS = "recommendations"
DEAD_LETTERS = "dead-letters"
ITEM_DELTAS = "item-deltas"
VIDEO_VECTORS = "video-vectors"
ERASURES = "erasures"
STATS = "stats"
STAGES = (
    VIDEOS,
    USER_EVENTS,
    RECOMMENDATIONS,
    DEAD_LETTERS,
    ITEM_DELTAS,
    VIDEO_VECTORS,
    ERASURES,
    STATS,
)

# Header of a Recommendations record: the Kafka timestamp (epoch ms) of the event that triggered
# it, so a subscriber can measure event -> published list latency end to end.
TRIGGER_TS_HEADER = "vidrec-trigger-ts-ms"

# Header of an ``item-deltas`` record: the origin of the worker that shipped it (also in the
# body), so a worker skips its own records without decoding them.
ORIGIN_HEADER = "vidrec-origin"

# Version of the internal records below. 2: ``item-deltas`` and the users table's values are
# msgpack; 1: JSON. A reader still reads version 1 (retained topics and changelogs hold it
# during a rolling upgrade), and a newer trailing field is ignored, so mixed workers can run.
WIRE_VERSION = 2

DEAD_LETTER_KIND = "dead-letter"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected record; ``value``/``key`` are the original bytes (base64 on the wire)."""

    topic: str
    partition: int
    offset: int
    reason: str
    value: bytes | None
    key: bytes | None = None
    stage: str = ""
    time: str = ""

    def to_json(self) -> bytes:
        d = asdict(self)
        d["value_b64"] = _b64(d.pop("value"))
        d["key_b64"] = _b64(d.pop("key"))
        d["kind"] = DEAD_LETTER_KIND
        d["time"] = self.time or datetime.now(UTC).isoformat()
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        d = json.loads(raw)
        if d.get("kind") != DEAD_LETTER_KIND:
            raise ValueError(f"not a dead letter: kind={d.get('kind')!r}")
        return cls(
            topic=d["topic"],
            partition=int(d["partition"]),
            offset=int(d["offset"]),
            reason=d["reason"],
            value=_unb64(d.get("value_b64")),
            key=_unb64(d.get("key_b64")),
            stage=d.get("stage", ""),
            time=d.get("time", ""),
        )

    def preview(self, width: int = 120) -> str:
        """The original value as text, shortened, for a human reading the dead-letter topic."""
        if self.value is None:
            return "(no value)"
        text = self.value.decode("utf-8", errors="replace")
        return text if len(text) <= width else text[: width - 3] + "..."


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


@dataclass
class ItemDeltas:
    """Item-side effects of one user event, naming items by video id (safe to ship anywhere)."""

    cooc: list[tuple[str, str, float, float]] = field(default_factory=list)
    popularity: list[tuple[str, float, float]] = field(default_factory=list)
    # (video id, gradient row, bias gradient); rows are float32 arrays, shipped as raw float32
    factors: list[tuple[str, np.ndarray, float]] = field(default_factory=list)
    fusion: list[list[float]] | None = None  # training rows: the picked item's, then others'
    ts: float = 0.0
    sign: int = 1  # -1: subtract the cooc and popularity increments (a forgotten user's)
    # the positive item of a learned event: every worker adds it to its negative-sampling pool,
    # so a restarted worker (or any other) samples negatives from the same pool as this one
    positive: str | None = None

    def is_empty(self) -> bool:
        return not (self.cooc or self.popularity or self.factors or self.fusion is not None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (the version-1 body): for tests and people, not the hot path."""
        return {
            "cooc": [list(x) for x in self.cooc],
            "popularity": [list(x) for x in self.popularity],
            "factors": [(v, np.asarray(g).tolist(), b) for v, g, b in self.factors],
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
            [(a, np.asarray(g, dtype=np.float32), b) for a, g, b in d["factors"]],
            d.get("fusion"),
            d.get("ts", 0.0),
            int(d.get("sign", 1)),
            d.get("positive"),
        )


def encode_video_vector(
    video: VideoPublished,
    vector: np.ndarray,
    encoder: str,
    origin: str,
    visual: np.ndarray | None = None,
) -> bytes:
    """A ``video-vectors`` record: the video, its text vector and, when its thumbnail could be
    read, its visual descriptor (key ``visual``, absent otherwise: older readers ignore it)."""
    d = {
        "v": WIRE_VERSION,
        "origin": origin,
        "encoder": encoder,
        "video": json.loads(video.to_json()),
        "vector": _b64_f4(vector),
    }
    if visual is not None:
        d["visual"] = _b64_f4(visual)
    return json.dumps(d, separators=(",", ":")).encode()


def _b64_f4(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _f4(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


@dataclass(frozen=True, slots=True)
class VideoVector:
    """A decoded ``video-vectors`` record; ``visual`` None: no thumbnail descriptor."""

    video: VideoPublished
    vector: np.ndarray
    encoder: str
    visual: np.ndarray | None = None


def decode_video_record(raw: bytes) -> VideoVector:
    """The whole ``video-vectors`` record, visual descriptor included (records from before
    issue 16 have none)."""
    d = json.loads(raw)
    video = decode(d["video"], expect=VideoPublished)
    assert isinstance(video, VideoPublished)
    visual = _f4(d["visual"]) if d.get("visual") else None
    return VideoVector(video, _f4(d["vector"]), str(d.get("encoder", "")), visual)


def decode_video_vector(raw: bytes) -> tuple[VideoPublished, np.ndarray, str]:
    """(video, text vector, encoder name) of a ``video-vectors`` record."""
    r = decode_video_record(raw)
    return r.video, r.vector, r.encoder


class _FactorRows(msgspec.Struct, array_like=True):
    ids: list[str]
    grads: bytes  # (len(ids), dim) little-endian float32, row-major
    bias: list[float]


class _DeltasBody(msgspec.Struct, array_like=True):
    cooc: list[tuple[str, str, float, float]]
    popularity: list[tuple[str, float, float]]
    factors: _FactorRows
    fusion: list[list[float]] | None = None
    ts: float = 0.0
    sign: int = 1
    positive: str | None = None


class _DeltasRecord(msgspec.Struct, array_like=True):
    """An ``item-deltas`` record from version 2 on: a msgpack array, fields in this order."""

    v: int
    origin: str
    user_id: str
    event_id: str
    deltas: _DeltasBody


_ENCODER = msgspec.msgpack.Encoder()
_DELTAS_DECODER = msgspec.msgpack.Decoder(_DeltasRecord)


def encode_item_deltas(deltas: ItemDeltas, user_id: str, event_id: str, origin: str) -> bytes:
    """msgpack: the gradient rows as one float32 buffer (a float's text is ~4x its bytes)."""
    f = deltas.factors
    grads = b"".join(np.asarray(g, dtype="<f4").tobytes() for _, g, _ in f)
    body = _DeltasBody(
        deltas.cooc,
        deltas.popularity,
        _FactorRows([v for v, _, _ in f], grads, [float(b) for _, _, b in f]),
        deltas.fusion,
        deltas.ts,
        deltas.sign,
        deltas.positive,
    )
    return _ENCODER.encode(_DeltasRecord(WIRE_VERSION, origin, user_id, event_id, body))


def decode_item_deltas(raw: bytes) -> tuple[str, str, str, ItemDeltas]:
    """``(origin, user_id, event_id, deltas)`` of an ``item-deltas`` record, either version.

    Raises ``ValueError`` (or ``KeyError``/``TypeError`` for a malformed version 1) saying
    what is wrong with a record that cannot be read.
    """
    if raw[:1] == b"{":  # version 1: JSON
        d = json.loads(raw)
        return d["origin"], d["user_id"], d["event_id"], ItemDeltas.from_dict(d["deltas"])
    try:
        rec = _DELTAS_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an item-deltas record (msgpack, version 2): {exc}") from None
    b, f = rec.deltas, rec.deltas.factors
    n = len(f.ids)
    if len(f.bias) != n or (len(f.grads) % (4 * n) if n else len(f.grads)):
        raise ValueError(
            f"item-deltas record: {n} factor ids, {len(f.bias)} biases and {len(f.grads)} "
            "gradient bytes do not make rows of float32"
        )
    rows = np.frombuffer(f.grads, dtype="<f4").reshape(n, -1) if n else ()
    deltas = ItemDeltas(
        b.cooc,
        b.popularity,
        list(zip(f.ids, rows, f.bias, strict=True)),
        b.fusion,
        b.ts,
        b.sign,
        b.positive,
    )
    return rec.origin, rec.user_id, rec.event_id, deltas


# -- the users table's value: a user's snapshot and outbox ----------------------------------
# An outbox entry: (event id, stage, value or None for a tombstone, headers).
OutboxEntry = tuple[str, str, bytes | None, dict[str, bytes]]


class _UserValue(msgspec.Struct, array_like=True):
    """A users-table value from version 2 on: the engine's snapshot and the outbox."""

    v: int
    snap: dict[str, Any]  # ``Engine.snapshot_user``
    outbox: list[tuple[str, str, bytes | None, dict[str, bytes]]]


_USER_DECODER = msgspec.msgpack.Decoder(_UserValue)


def encode_user_value(snap: dict[str, Any], outbox: Sequence[OutboxEntry]) -> bytes:
    """msgpack; the outbox values as bin (version 1 held them as JSON text in JSON)."""
    return _ENCODER.encode(_UserValue(WIRE_VERSION, snap, list(outbox)))


def decode_user_value(raw: bytes) -> tuple[dict[str, Any], list[OutboxEntry]]:
    """``(snapshot, outbox)`` of a users-table value, either version."""
    if raw[:1] == b"{":  # version 1: the snapshot as JSON with an "outbox" of JSON text
        snap = json.loads(raw)
        outbox = [
            (
                b["event_id"],
                b["stage"],
                None if b["value"] is None else b["value"].encode(),
                {k: v.encode() for k, v in b.get("headers", {}).items()},
            )
            for b in snap.pop("outbox", None) or ()
        ]
        return snap, outbox
    try:
        val = _USER_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a users-table value (msgpack, version 2): {exc}") from None
    return val.snap, val.outbox


class WorkerStats(
    msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="kind", tag="worker_stats"
):
    """One worker's figures, published every few seconds on the compacted ``stats`` topic
    (keyed by ``worker_id``), so ``vidrec serve``'s dashboard shows every worker of a
    deployment without knowing their addresses. Prometheus scrapes the same figures from each
    worker's ``/metrics``; this record is for the dashboard and for people reading the topic.

    Counters are totals since the worker started (a reader takes rates from two records);
    the latency quantiles and the live quality cover the worker's recent window.
    """

    worker_id: str
    at: float  # epoch seconds when the worker built the record
    started_at: float = 0.0
    events: int = 0  # user events accepted
    lists: int = 0  # recommendation lists published
    dead_letters: int = 0
    degraded_searches: int = 0
    videos_embedded: int = 0
    latency_p50_ms: float | None = None  # event's Kafka timestamp -> list sent, recent window
    latency_p99_ms: float | None = None
    lag: dict[str, int] = msgspec.field(default_factory=dict)  # "topic:partition" -> records
    hr10: float | None = None  # live HR@10 of published lists vs the user's next positive event
    ndcg10: float | None = None
    quality_window: int = 0  # how many next-positive events the live quality covers

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerStats:
        """Raises ``msgspec.ValidationError`` (a ``ValueError``) on a malformed record."""
        return msgspec.json.decode(raw, type=cls)
