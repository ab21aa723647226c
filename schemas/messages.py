"""Versioned message types that travel on vidrec's topics and in its event logs.

Every message carries a ``kind`` (so one log line or one topic record says what it is) and a
``schema_version``. Validation is strict: unknown fields, wrong types and naive timestamps are
rejected with a message that names the field, because a silently coerced event would corrupt
learned state that cannot be un-learned cheaply.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


class EventType(StrEnum):
    """What the user did. Each maps to an implicit-feedback weight (see ``workers.settings``)."""

    IMPRESSION = "impression"
    PLAY = "play"
    WATCH = "watch"
    COMPLETE = "complete"
    LIKE = "like"
    SHARE = "share"
    SKIP = "skip"
    DISLIKE = "dislike"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class VideoPublished(_Message):
    """A new (or re-published) video; keyed by ``video_id``."""

    kind: Literal["video"] = "video"
    video_id: Id
    title: str = Field(max_length=1000)
    description: str = Field(default="", max_length=20000)
    tags: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100)
    category: str = Field(default="", max_length=200)
    duration_s: float = Field(default=0.0, ge=0, le=30 * 24 * 3600)
    width: int = Field(default=0, ge=0, le=100_000)
    height: int = Field(default=0, ge=0, le=100_000)
    language: str = Field(default="", max_length=35)
    published_at: AwareDatetime
    thumbnail_url: str | None = Field(default=None, max_length=2048)
    creator_id: str | None = Field(default=None, max_length=256)

    def text(self) -> str:
        """The text the content encoder sees: title, description, tags and category."""
        parts = [self.title, self.description]
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags))
        if self.category:
            parts.append("Category: " + self.category)
        return ". ".join(p for p in parts if p)


class UserEvent(_Message):
    """One user action on one video; keyed by ``user_id``; ``event_id`` is the idempotency key."""

    kind: Literal["event"] = "event"
    event_id: Id
    user_id: Id
    video_id: Id
    type: EventType
    watch_s: float = Field(default=0.0, ge=0, le=30 * 24 * 3600)
    ts: AwareDatetime


class ForgetUser(_Message):
    """Erase everything held about one user."""

    kind: Literal["forget"] = "forget"
    user_id: Id
    ts: AwareDatetime


class SourceScores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    content: float = 0.0
    cooc: float = 0.0
    mf: float = 0.0
    popular: float = 0.0


class RecommendedItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    video_id: Id
    score: float
    sources: SourceScores = Field(default_factory=SourceScores)


class Recommendations(_Message):
    """A fresh top-K for one user, published after each accepted event; keyed by ``user_id``."""

    kind: Literal["recommendations"] = "recommendations"
    user_id: Id
    items: list[RecommendedItem]
    trigger_event_id: str | None = None
    generated_at: AwareDatetime
    latency_ms: float = Field(default=0.0, ge=0)
    model: dict[str, str] = Field(default_factory=dict)


Message = Annotated[
    VideoPublished | UserEvent | ForgetUser | Recommendations, Field(discriminator="kind")
]
_MESSAGE = TypeAdapter(Message)

MESSAGE_TYPES: dict[str, type[_Message]] = {
    "video": VideoPublished,
    "event": UserEvent,
    "forget": ForgetUser,
    "recommendations": Recommendations,
}


class DecodeError(ValueError):
    """Raised for a record that is not a valid message; ``reason`` is one human-readable line."""

    def __init__(self, reason: str, raw: bytes | str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(raw: bytes | str | dict[str, Any], expect: type[_Message] | None = None) -> _Message:
    """Decode one JSON record into its message type.

    Parameters
    ----------
    raw
        JSON text or bytes, or an already parsed object.
    expect
        When given, the record must be of this type; its ``kind`` may then be omitted.

    Raises
    ------
    DecodeError
        With a one-line reason naming the offending field; never any other exception.
    """
    try:
        obj = json.loads(raw) if isinstance(raw, bytes | str) else raw
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not valid JSON: {exc}", raw) from None
    except RecursionError:
        raise DecodeError("not valid JSON: nested too deeply", raw) from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}", raw)
    try:
        if expect is not None:
            kind = obj.get("kind", expect.model_fields["kind"].default)
            if kind != expect.model_fields["kind"].default:
                raise DecodeError(f"kind: expected {expect.__name__}, got {kind!r}", raw)
            return expect.model_validate({**obj, "kind": kind})
        if "kind" not in obj:
            raise DecodeError("kind: field required (one of video, event, forget)", raw)
        return _MESSAGE.validate_python(obj)
    except ValidationError as exc:
        raise DecodeError(_reason(exc), raw) from None
    except RecursionError:
        raise DecodeError("record nested too deeply", raw) from None


def encode(msg: _Message) -> bytes:
    return msg.to_json()


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every message type, by type name."""
    return {cls.__name__: cls.model_json_schema() for cls in MESSAGE_TYPES.values()}


__all__ = [
    "SCHEMA_VERSION",
    "DecodeError",
    "EventType",
    "ForgetUser",
    "MESSAGE_TYPES",
    "Message",
    "RecommendedItem",
    "Recommendations",
    "SourceScores",
    "UserEvent",
    "VideoPublished",
    "decode",
    "encode",
    "json_schemas",
    "utcnow",
]
