"""vidrec's internal wire: stage names, dead letters, item deltas, and the codecs of the two
internal topics (``item-deltas``, ``video-vectors``).

These are what workers send each other. They live here, below the engine and the streaming
layer, so that both can speak them without importing each other. Topic *names* (with the
deployment's prefix) are built in ``streams.wire.topics`` from the stage names below.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

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
STAGES = (
    VIDEOS,
    USER_EVENTS,
    RECOMMENDATIONS,
    DEAD_LETTERS,
    ITEM_DELTAS,
    VIDEO_VECTORS,
    ERASURES,
)

# Header of a Recommendations record: the Kafka timestamp (epoch ms) of the event that triggered
# it, so a subscriber can measure event -> published list latency end to end.
TRIGGER_TS_HEADER = "vidrec-trigger-ts-ms"

# Version of the two internal records below; a reader refuses nothing older, and a newer
# field is ignored, so a rolling upgrade can run mixed workers.
WIRE_VERSION = 1

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
    factors: list[tuple[str, list[float], float]] = field(default_factory=list)
    fusion: list[list[float]] | None = None  # training rows: the picked item's, then others'
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


def encode_video_vector(
    video: VideoPublished, vector: np.ndarray, encoder: str, origin: str
) -> bytes:
    vec = np.ascontiguousarray(vector, dtype="<f4")
    return json.dumps(
        {
            "v": WIRE_VERSION,
            "origin": origin,
            "encoder": encoder,
            "video": json.loads(video.to_json()),
            "vector": base64.b64encode(vec.tobytes()).decode("ascii"),
        },
        separators=(",", ":"),
    ).encode()


def decode_video_vector(raw: bytes) -> tuple[VideoPublished, np.ndarray, str]:
    d = json.loads(raw)
    video = decode(d["video"], expect=VideoPublished)
    assert isinstance(video, VideoPublished)
    vec = np.frombuffer(base64.b64decode(d["vector"]), dtype="<f4").astype(np.float32)
    return video, vec, str(d.get("encoder", ""))


def encode_item_deltas(deltas: ItemDeltas, user_id: str, event_id: str, origin: str) -> bytes:
    return json.dumps(
        {
            "v": WIRE_VERSION,
            "origin": origin,
            "user_id": user_id,
            "event_id": event_id,
            "deltas": deltas.to_dict(),
        },
        separators=(",", ":"),
    ).encode()


def decode_item_deltas(raw: bytes) -> tuple[str, str, str, ItemDeltas]:
    """``(origin, user_id, event_id, deltas)`` of an ``item-deltas`` record."""
    d = json.loads(raw)
    return d["origin"], d["user_id"], d["event_id"], ItemDeltas.from_dict(d["deltas"])
