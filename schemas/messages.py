"""Versioned message types that travel on vidrec's topics and in its event logs.

Every message carries a ``kind`` (so one log line or one topic record says what it is) and a
``schema_version``. Validation is strict: unknown fields, wrong types and naive timestamps are
rejected with a message that names the field, because a silently coerced event would corrupt
learned state that cannot be un-learned cheaply.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

SCHEMA_VERSION = 1

Id = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f]+$")]


def _whole_minute_offset(dt: datetime) -> datetime:
    """JSON carries UTC offsets to the minute, so an offset with seconds (a zone's historic local
    mean time, say) would be cut on the way out and shift the instant; such a time is kept in UTC.
    """
    off = dt.utcoffset()
    if off is not None and (off.seconds % 60 or off.microseconds):
        try:
            return dt.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range once converted to UTC") from None
    return dt


Timestamp = Annotated[AwareDatetime, AfterValidator(_whole_minute_offset)]


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


class MessageBase(BaseModel):
    """What every message has: strict validation, a schema version and its JSON bytes; the
    type to annotate "any one message" with (``Message`` is the union that decodes them)."""

    # NaN and infinities are refused: JSON has no spelling for them (they would go out as null)
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=False, allow_inf_nan=False
    )

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class VideoPublished(MessageBase):
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
    published_at: Timestamp
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


class UserEvent(MessageBase):
    """One user action on one video; keyed by ``user_id``; ``event_id`` is the idempotency key."""

    kind: Literal["event"] = "event"
    event_id: Id
    user_id: Id
    video_id: Id
    type: EventType
    watch_s: float = Field(default=0.0, ge=0, le=30 * 24 * 3600)
    ts: Timestamp


class ForgetUser(MessageBase):
    """Erase everything held about one user."""

    kind: Literal["forget"] = "forget"
    user_id: Id
    ts: Timestamp


class SourceScores(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    content: float = 0.0
    cooc: float = 0.0
    mf: float = 0.0
    popular: float = 0.0
    # the sequential model's score (issue 17): absent (None, left out of the JSON) when the
    # model is off, so the messages of an engine without it are byte for byte what they were
    seq: float | None = None


class ReasonKind(StrEnum):
    """Why an item is in a list, in the words a product would show.

    ``watched``: "because you watched X" (X gave the item its co-occurrence or content score);
    ``new_in_topic``: a fresh video close to what the user watches; ``creator``: from a creator
    the user watches (issue 16); ``trending``: popular now.
    """

    WATCHED = "watched"
    NEW_IN_TOPIC = "new_in_topic"
    CREATOR = "creator"
    TRENDING = "trending"


class Reason(BaseModel):
    """The short, machine-readable reason an item was shown (issue 15).

    The engine gives one to every item it publishes, from the item's source scores (what
    fusion weighed), so a reason never disagrees with the scores beside it:

    - ``new_in_topic``: a cold video (one that may take a fresh slot, ``Ranked.fresh``) with a
      content score and no co-occurrence score: only its content ties it to the user.
      ``video_id`` is the history item nearest to it by content and ``topic`` that item's
      category (None when the catalogue has none for it). A cold video that co-occurs with the
      history is ``watched``: someone did watch it beside X, which says more;
    - ``watched``: else, when its co-occurrence or content score is above zero; ``source`` is
      whichever of the two adds more to the fused score (fusion weight times score) and
      ``video_id`` the history item that gave most of it (the largest co-count contribution,
      or the nearest content vector);
    - ``creator``: an item whose creator (the user's share of events on it, times its fusion
      weight) adds more to its score than co-occurrence and content do; ``creator`` names it.
      Checked first: "more from a creator you watch" is what a user recognises;
    - ``trending``: everything else. That is popularity, and also items that only the user's
      factors or sequence model brought (their ``mf``/``seq`` scores): no one watched item
      explains those, and "because you watched" would name one at random. An item with no
      score at all (a user without history gets the trending list) is trending too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ReasonKind
    # the history item behind a ``watched`` or ``new_in_topic`` reason
    video_id: str | None = None
    # which score it gave: "cooc" or "content"
    source: Literal["cooc", "content"] | None = None
    # for ``new_in_topic``: the topic (the history item's category), when the catalogue knows it
    topic: str | None = None
    # for ``creator``: the creator's id
    creator: str | None = Field(default=None, max_length=256)

    def text(self) -> str:
        """One line for people, e.g. ``because you watched v12``."""
        if self.kind == ReasonKind.WATCHED:
            return f"because you watched {self.video_id}"
        if self.kind == ReasonKind.NEW_IN_TOPIC:
            if self.topic:
                return f"new in {self.topic}, like {self.video_id}"
            return f"new, like {self.video_id}" if self.video_id else "new in a topic you watch"
        if self.kind == ReasonKind.CREATOR:
            return f"more from {self.creator}, whom you watch"
        return "trending"


class RecommendedItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    video_id: Id
    score: float
    sources: SourceScores = Field(default_factory=SourceScores)
    # absent (left out of the JSON) from engines and lists that do not give one
    reason: Reason | None = None


_ITEM_FIELDS = frozenset(RecommendedItem.model_fields) - {"reason"}  # set only when given
_ITEM_FIELDS_REASON = frozenset(RecommendedItem.model_fields)
_SOURCE_FIELDS = frozenset(SourceScores.model_fields)


def _trusted(cls: type[BaseModel], fields: frozenset[str], values: dict[str, Any]) -> Any:
    # What ``model_construct`` does for a model whose every field is given, without its
    # per-field default handling: a third of the cost, for the engine's twenty items an event.
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", fields)
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


_REASON_FIELDS: dict[tuple[bool, ...], frozenset[str]] = {}


def trusted_reason(
    kind: ReasonKind,
    video_id: str | None = None,
    source: Literal["cooc", "content"] | None = None,
    topic: str | None = None,
    creator: str | None = None,
) -> Reason:
    """A ``Reason`` from values the engine computed itself (not validated again); its fields
    set are the ones given (not None), as validation of the same JSON would leave them."""
    key = (video_id is not None, source is not None, topic is not None, creator is not None)
    fields = _REASON_FIELDS.get(key)
    if fields is None:
        names = ("video_id", "source", "topic", "creator")
        fields = _REASON_FIELDS[key] = frozenset(
            ["kind", *(n for n, on in zip(names, key, strict=True) if on)]
        )
    values = {"kind": kind, "video_id": video_id, "source": source, "topic": topic}
    values["creator"] = creator
    return _trusted(Reason, fields, values)


def recommended_items(
    ids: Sequence[str],
    scores: Sequence[float],
    sources: Sequence[Sequence[float]],
    reasons: Sequence[Reason | None] | None = None,
) -> list[RecommendedItem]:
    """A list's items from values the engine computed itself (not validated again).

    ``sources`` rows are ``(cooc, content, mf, popular)``, the ranker's column order, and a
    fifth column ``seq`` when the sequential model is on; ``reasons`` one per item (None: the
    item has none). Equal to validated models (``tests/test_models.py`` checks it); only for
    trusted, finite values.
    """
    if reasons is None:
        reasons = [None] * len(ids)
    return [
        _trusted(
            RecommendedItem,
            _ITEM_FIELDS if r is None else _ITEM_FIELDS_REASON,
            {
                "video_id": vid,
                "score": sc,
                "sources": _trusted(
                    SourceScores,
                    _SOURCE_FIELDS,
                    {
                        "content": s[1],
                        "cooc": s[0],
                        "mf": s[2],
                        "popular": s[3],
                        "seq": s[4] if len(s) > 4 else None,
                    },
                ),
                "reason": r,
            },
        )
        for vid, sc, s, r in zip(ids, scores, sources, reasons, strict=True)
    ]


class Recommendations(MessageBase):
    """A fresh top-K for one user, published after each accepted event; keyed by ``user_id``."""

    kind: Literal["recommendations"] = "recommendations"
    user_id: Id
    items: list[RecommendedItem]
    trigger_event_id: str | None = None
    generated_at: Timestamp
    latency_ms: float = Field(default=0.0, ge=0)
    model: dict[str, str] = Field(default_factory=dict)


class ErasureReceipt(MessageBase):
    """Proof that a ``ForgetUser`` was carried out: what was erased, and what could not be.

    Emitted by whoever held the user (the worker owning the user's partition, or the embedded
    engine) once the erasure is done; keyed by ``user_id``. ``erased`` counts entries per store;
    ``kept`` says, one line each, what remains and why (e.g. weights learned by SGD).
    """

    kind: Literal["erasure_receipt"] = "erasure_receipt"
    user_id: Id
    requested_at: Timestamp
    erased_at: Timestamp
    erased: dict[str, int] = Field(default_factory=dict)
    kept: list[str] = Field(default_factory=list)


Message = Annotated[
    VideoPublished | UserEvent | ForgetUser | Recommendations | ErasureReceipt,
    Field(discriminator="kind"),
]
_MESSAGE = TypeAdapter(Message)

MESSAGE_TYPES: dict[str, type[MessageBase]] = {
    "video": VideoPublished,
    "event": UserEvent,
    "forget": ForgetUser,
    "recommendations": Recommendations,
    "erasure_receipt": ErasureReceipt,
}


class DecodeError(ValueError):
    """Raised for a record that is not a valid message; ``reason`` is one human-readable line."""

    def __init__(self, reason: str, raw: bytes | str | None = None) -> None:
        reason = _one_line(reason)
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def _one_line(text: str, limit: int = 1000) -> str:
    """Reasons quote field names and values from the record, and they land in one-line reports
    and dead-letter headers: escape what is not printable (newlines, surrogates, bidi controls)
    and cap the length.
    """
    if not text.isprintable():
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(
    raw: bytes | str | dict[str, Any], expect: type[MessageBase] | None = None
) -> MessageBase:
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
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer of over 4300 digits
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


def encode(msg: MessageBase) -> bytes:
    return msg.to_json()


def utcnow() -> datetime:
    return datetime.now(UTC)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every message type, by type name."""
    return {cls.__name__: cls.model_json_schema() for cls in MESSAGE_TYPES.values()}
