"""Property-based fuzzing of every message decoder and of the embedded ingest path (log -> engine).

Properties: ``decode`` returns a message that re-encodes to the same bytes, or raises
``DecodeError`` with a non-empty one-line reason; nothing else escapes. ``read_log`` yields every
good line's message in order and a ``BadLine`` (line number, reason) for every bad one, and
``drive`` processes every good record and hands every bad one to ``on_bad``, whatever the
timestamps and whether the videos exist. Runs are derandomized so CI sees the same inputs.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import (
    DecodeError,
    EventType,
    ForgetUser,
    Recommendations,
    UserEvent,
    VideoPublished,
    decode,
)
from schemas.messages import MESSAGE_TYPES
from streams.wire.eventlog import BadLine, read_log
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.index import VideoIndex
from workers.inprocess import drive
from workers.settings import EngineSettings, IndexSettings

KINDS = tuple(MESSAGE_TYPES)  # video, event, forget, recommendations, erasure_receipt

# Distinct inputs handed to ``decode`` per message kind (and per kind and mutation, for the
# report); each is decoded twice, plainly and with ``expect=``. ``VIDREC_FUZZ_REPORT=file.json``
# writes the counts out.
TRIED: Counter[str] = Counter()
TRIED_BY_MUTATION: Counter[tuple[str, str]] = Counter()
REFUSED: Counter[str] = Counter()  # of those, how many the plain decode refused
DRIVEN: Counter[str] = Counter()  # what the drive test fed the engines, summed over examples
_FINISHED: set[str] = set()

# Examples per kind: each decodes one valid message and one variant per mutation (17), so
# 18 * 600 = 10,800 inputs per kind, plus the log and drive lines.
DECODE_EXAMPLES = 600
LOG_EXAMPLES = 60
DRIVE_EXAMPLES = 20
MIN_INPUTS_PER_KIND = 10_000


def fuzz_settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# ---------------------------------------------------------------------------------------------
# The property every decode call must satisfy
# ---------------------------------------------------------------------------------------------


def count(kind: str, label: str) -> None:
    TRIED[kind] += 1
    TRIED_BY_MUTATION[kind, label] += 1


def check(
    raw: str | bytes,
    kind: str,
    label: str,
    *,
    bad: bool = False,
    names: str | None = None,
) -> Any:
    """Decode ``raw`` plainly and with ``expect=``: a message that round-trips, or DecodeError.

    ``bad``: the plain decode must fail; ``names``: its reason must name this field.
    """
    count(kind, label)
    out = _decode_one(raw, None)
    REFUSED[kind] += isinstance(out, DecodeError)
    if bad:
        assert isinstance(out, DecodeError), f"{label}: accepted {raw[:300]!r}"
        if names is not None:
            assert names in out.reason, f"{label}: {out.reason!r} does not name {names!r}"
    _decode_one(raw, MESSAGE_TYPES[kind])
    return out


def _decode_one(raw: str | bytes, expect: type | None) -> Any:
    try:
        msg = decode(raw, expect=expect)
    except DecodeError as exc:
        reason = exc.reason
        assert isinstance(reason, str) and reason.strip(), f"empty reason for {raw[:200]!r}"
        assert len(reason.splitlines()) == 1 and reason.isprintable(), repr(reason[:300])
        assert len(reason) <= 1000
        reason.encode("utf-8")  # safe to put in a dead-letter header
        return exc
    assert isinstance(msg, tuple(MESSAGE_TYPES.values()))
    if expect is not None:
        assert isinstance(msg, expect)
    # a decoded message is exactly what it re-encodes to
    wire = msg.to_json()
    back = decode(wire)
    assert back == msg and back.to_json() == wire, f"round trip changed {raw[:200]!r}"
    return msg


# ---------------------------------------------------------------------------------------------
# Valid messages
# ---------------------------------------------------------------------------------------------

# Unicode that is valid but awkward: bidi controls, BOM, line/paragraph separators, combining
# marks, ZWJ emoji sequences, the last code point, non-characters, DEL and C1 controls.
EDGE_TEXT = [
    "\u200f",
    "\u200e",
    "\u202e",
    "\u2066",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\x7f",
    "\x85",
    "\u00a0",
    "e\u0301",
    "\U0001f3ac",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "\U0010ffff",
    "\ufffd",
    "\ufdd0",
    "\U0001d54f",
    " ",
    '"',
    "\\",
    "</script>",
]
CONTROL = [chr(c) for c in range(0x20)]  # NUL included: fine in free text, never in an id
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\udc80", "\ud83c"]


def text(max_len: int, *, id_like: bool = False) -> st.SearchStrategy[str]:
    """Strings up to ``max_len`` code points, with edge-case unicode and boundary lengths."""
    chars = st.characters(min_codepoint=0x20 if id_like else 0, exclude_categories=["Cs"])
    pieces = st.one_of(st.text(chars, max_size=8), st.sampled_from(EDGE_TEXT))
    if not id_like:
        pieces = pieces | st.sampled_from(CONTROL)
    mixed = st.lists(pieces, max_size=6).map("".join).map(lambda s: s[:max_len])
    boundary = st.tuples(
        st.characters(min_codepoint=0x20, exclude_categories=["Cs"]),
        st.sampled_from([max_len - 1, max_len]),
    ).map(lambda t: t[0] * t[1])
    out = st.one_of(mixed, mixed, mixed, boundary)
    return out.map(lambda s: s or "x") if id_like else out


IDS = text(256, id_like=True)
FIXED_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda m: timezone(timedelta(minutes=m))
)
# Offsets with seconds (a zone's local mean time) are normalised to UTC by the schema.
ODD_OFFSETS = st.integers(-86_399, 86_399).map(lambda s: timezone(timedelta(seconds=s)))
EDGE_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
]
TIMES = st.one_of(
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC) | FIXED_OFFSETS),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=ODD_OFFSETS),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.sampled_from(EDGE_TIMES),
)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
SECONDS = st.floats(0, 30 * 24 * 3600)


def _opt(**fields: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    return fields


VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "video": st.fixed_dictionaries(
        {"video_id": IDS, "title": text(1000), "published_at": TIMES},
        optional=_opt(
            description=text(20_000),
            tags=st.one_of(
                st.lists(text(200), max_size=5),
                st.integers(99, 100).map(lambda n: [f"t{i}" for i in range(n)]),
            ),
            category=text(200),
            duration_s=SECONDS,
            width=st.integers(0, 100_000),
            height=st.integers(0, 100_000),
            language=text(35),
            thumbnail_url=st.none() | text(2048),
            creator_id=st.none() | text(256),
            schema_version=st.just(1),
        ),
    ),
    "event": st.fixed_dictionaries(
        {
            "event_id": IDS,
            "user_id": IDS,
            "video_id": IDS,
            "type": st.sampled_from(list(EventType)),
            "ts": TIMES,
        },
        optional=_opt(watch_s=SECONDS, schema_version=st.just(1)),
    ),
    "forget": st.fixed_dictionaries(
        {"user_id": IDS, "ts": TIMES}, optional=_opt(schema_version=st.just(1))
    ),
    "recommendations": st.fixed_dictionaries(
        {
            "user_id": IDS,
            "items": st.lists(
                st.fixed_dictionaries(
                    {"video_id": IDS, "score": FINITE},
                    optional=_opt(
                        sources=st.fixed_dictionaries(
                            {},
                            optional=_opt(content=FINITE, cooc=FINITE, mf=FINITE, popular=FINITE),
                        )
                    ),
                ),
                max_size=4,
            ),
            "generated_at": TIMES,
        },
        optional=_opt(
            trigger_event_id=st.none() | text(300),
            latency_ms=st.floats(0, allow_infinity=False),
            model=st.dictionaries(text(40), text(40), max_size=3),
            schema_version=st.just(1),
        ),
    ),
    "erasure_receipt": st.fixed_dictionaries(
        {"user_id": IDS, "requested_at": TIMES, "erased_at": TIMES},
        optional=_opt(
            erased=st.dictionaries(text(40), st.integers(0, 2**31), max_size=4),
            kept=st.lists(text(300), max_size=3),
            schema_version=st.just(1),
        ),
    ),
}

# Field facts the mutations need (kept by hand so that a schema change shows up here).
MAX_LEN = {
    "video": {
        "video_id": 256,
        "title": 1000,
        "description": 20_000,
        "category": 200,
        "language": 35,
        "thumbnail_url": 2048,
        "creator_id": 256,
    },
    "event": {"event_id": 256, "user_id": 256, "video_id": 256},
    "forget": {"user_id": 256},
    "recommendations": {"user_id": 256},
    "erasure_receipt": {"user_id": 256},
}
IDS_OF = {
    "video": ["video_id"],
    "event": ["event_id", "user_id", "video_id"],
    "forget": ["user_id"],
    "recommendations": ["user_id"],
    "erasure_receipt": ["user_id"],
}
FLOATS_OF = {
    "video": ["duration_s"],
    "event": ["watch_s"],
    "forget": [],
    "recommendations": ["latency_ms"],
    "erasure_receipt": [],
}
NUMBERS_OF = {
    "video": ["duration_s", "width", "height", "schema_version"],
    "event": ["watch_s", "schema_version"],
    "forget": ["schema_version"],
    "recommendations": ["latency_ms", "schema_version"],
    "erasure_receipt": ["schema_version"],
}
TIME_OF = {
    "video": "published_at",
    "event": "ts",
    "forget": "ts",
    "recommendations": "generated_at",
    "erasure_receipt": "requested_at",
}
REQUIRED_OF = {
    kind: ["kind"] + [n for n, f in cls.model_fields.items() if f.is_required()]
    for kind, cls in MESSAGE_TYPES.items()
}


def build(kind: str, fields: dict[str, Any]) -> Any:
    return MESSAGE_TYPES[kind](**fields)


# ---------------------------------------------------------------------------------------------
# Bad (or doubtful) inputs, made from a valid message
# ---------------------------------------------------------------------------------------------

_SENTINEL = "\x01fuzz-splice\x01"


def splice(obj: dict[str, Any], raw_value: str) -> str:
    """JSON of ``obj`` with the sentinel value replaced by ``raw_value`` verbatim (for inputs
    that ``json.dumps`` cannot write: 100,000-deep nesting, 5,000-digit integers, ``1e400``)."""
    s = json.dumps(obj)
    token = json.dumps(_SENTINEL)
    assert s.count(token) == 1
    return s.replace(token, raw_value)


Mutation = tuple[str, str | bytes, bool, str | None]  # label, input, must fail, field named


def all_fields(kind: str) -> list[str]:
    return [n for n in MESSAGE_TYPES[kind].model_fields if n != "kind"]


def to_wire(rng: random.Random, obj: Any) -> str | bytes:
    """JSON text as str, UTF-8 bytes, or bytes with surrogates passed through (as Kafka might)."""
    how = rng.choice(["ascii", "str", "bytes"])
    if how == "ascii":
        return json.dumps(obj)
    s = json.dumps(obj, ensure_ascii=False)
    return s if how == "str" else s.encode("utf-8", "surrogatepass")


def rng_char(rng: random.Random) -> str:
    """One code point: mostly ASCII, else anywhere in Unicode except the surrogates."""
    if rng.random() < 0.5:
        return chr(rng.randrange(0x20, 0x7F))
    c = rng.randrange(0x110000 - 0x800)
    return chr(c + 0x800 if c >= 0xD800 else c)


def rng_text(rng: random.Random, max_len: int = 12) -> str:
    parts = []
    for _ in range(rng.randrange(max_len + 1)):
        r = rng.random()
        if r < 0.1:
            parts.append(rng.choice(EDGE_TEXT))
        elif r < 0.15:
            parts.append(rng.choice(CONTROL))
        else:
            parts.append(rng_char(rng))
    return "".join(parts)


WRONG_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    -0.0,
    2**63,
    -(2**64),
    "",
    "x",
    "1",
    "1.5",
    "true",
    "2026-01-01T00:00:00Z",
    [],
    [1, "a"],
    {},
    {"a": 1},
    [{}],
]


def wrong_value(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice(WRONG_VALUES)
    if r < 0.75:
        return rng.randint(-(2**70), 2**70)
    if r < 0.9:
        return rng.uniform(-1e12, 1e12)
    return rng_text(rng, 5)


BAD_TIMES: list[Any] = [
    0,
    -1,
    1e20,
    -1e20,
    2**64,
    -(2**63),
    1.7e308,
    -1.7e308,
    253_402_300_800,
    -62_135_596_801,
    float("nan"),
    float("inf"),
    float("-inf"),
    "0000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00-00:01",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59+14:00",
    "10000-01-01T00:00:00Z",
    "-0001-01-01T00:00:00Z",
    "2026-02-30T00:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T00:00:00",
    "2026-01-01",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+23:59",
    "2026-01-01T00:00:00.1234567890Z",
    "now",
    "",
    "\u0662\u0660\u0662\u0666-01-01T00:00:00Z",
    *[t.isoformat() for t in EDGE_TIMES],
]


def bad_time(rng: random.Random) -> Any:
    r = rng.random()
    if r < 0.6:
        return rng.choice(BAD_TIMES)
    if r < 0.8:
        return rng.randint(-(10**13), 10**13)
    return rng.uniform(-1e13, 1e13)


def _mutate_truncated(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    wire: str | bytes = msg.to_json()
    if rng.random() < 0.5:
        wire = wire.decode()
    return "truncated", wire[: rng.randrange(len(wire))], True, None


def _mutate_wrong_type(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    d[rng.choice(all_fields(kind))] = wrong_value(rng)
    return "wrong type", to_wire(rng, d), False, None


def _mutate_huge_string(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    limits = dict(MAX_LEN[kind])
    if kind == "video":
        limits["tags"] = 200
    name = rng.choice(sorted(limits))
    huge = rng_char(rng) * (limits[name] + rng.randint(1, 5000))
    d[name] = ["ok", huge] if name == "tags" else huge
    return "huge string", to_wire(rng, d), True, name


def _mutate_unknown_enum(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    if kind == "event" and rng.random() < 0.5:
        d["type"] = rng.choice(["PLAY", "Like", " play", "play ", "pl\u0430y", rng_text(rng)])
        if d["type"] not in set(EventType):
            return "unknown enum", to_wire(rng, d), True, "type"
    d["kind"] = rng.choice(["VIDEO", "Event", "forget ", "recommendation", rng_text(rng)])
    return "unknown enum", to_wire(rng, d), d["kind"] not in MESSAGE_TYPES, None


def _mutate_missing(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    name = rng.choice(REQUIRED_OF[kind])
    del d[name]
    return "missing field", to_wire(rng, d), True, name


def _mutate_empty_id(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    name = rng.choice(IDS_OF[kind])
    d[name] = ""
    return "empty id", to_wire(rng, d), True, name


def _mutate_control_id(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    name = rng.choice(IDS_OF[kind])
    at = rng.randint(0, len(d[name]))
    d[name] = d[name][:at] + rng.choice(CONTROL) + d[name][at:]
    return "control char in id", to_wire(rng, d), True, name


def _mutate_surrogate(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    bad = rng.choice(SURROGATES)
    if kind == "forget" or rng.random() < 0.3:
        d[bad + "k"] = 1
    else:
        name = rng.choice([n for n in MAX_LEN[kind] if n in d])
        at = rng.randint(0, len(d[name]))
        d[name] = d[name][:at] + bad + d[name][at:]
    return "surrogate", to_wire(rng, d), True, None


def _mutate_deep(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    depth = rng.choice([rng.randint(3, 3000), 100_000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    d[rng.choice(all_fields(kind))] = _SENTINEL
    return "deep nesting", splice(d, opener * depth + "1" + closer * depth), True, None


def _mutate_timestamp(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    name = TIME_OF[kind]
    d[name] = bad_time(rng)
    nan = isinstance(d[name], float) and not math.isfinite(d[name])
    return "timestamp", json.dumps(d), nan, name if nan else None


def _mutate_nan(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    value = rng.choice(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
    target, name = d, TIME_OF[kind]
    if kind == "recommendations" and rng.random() < 0.5:
        d["items"] = [{"video_id": "v", "score": 1.0}]
        target, name = d["items"][0], "score"
        if rng.random() < 0.5:
            target["sources"] = {"mf": 0.5}
            target, name = target["sources"], rng.choice(["content", "cooc", "mf", "popular"])
    elif FLOATS_OF[kind]:
        name = rng.choice(FLOATS_OF[kind])
    target[name] = _SENTINEL
    return "nan/infinity", splice(d, value), True, name


def _mutate_extra(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    where = d
    if kind == "recommendations" and rng.random() < 0.5:
        d["items"] = [{"video_id": "v", "score": 1.0, "sources": {}}]
        where = rng.choice([d["items"][0], d["items"][0]["sources"]])
    key = rng_text(rng, 10)
    while key in where or key in MESSAGE_TYPES[kind].model_fields:
        key += rng_char(rng)
    where[key] = rng.choice(WRONG_VALUES)
    return "extra field", to_wire(rng, d), True, None


def _mutate_huge_int(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    d[rng.choice([*NUMBERS_OF[kind], TIME_OF[kind]])] = _SENTINEL
    digits = rng.choice(["", "-"]) + "9" * rng.randint(4301, 6000)
    return "huge integer", splice(d, digits), True, None


def _mutate_not_object(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    value = rng.choice([[d], [], 1, -2.5, "s", None, True, "{}"])
    return "not an object", to_wire(rng, value), True, None


def _mutate_other_kind(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    d["kind"] = rng.choice([k for k in KINDS if k != kind])
    return "other kind", to_wire(rng, d), True, None


def _mutate_garbage(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    r = rng.random()
    if r < 0.35:
        raw: str | bytes = rng.randbytes(rng.randrange(120))
    elif r < 0.7:
        raw = rng_text(rng, 60)
    else:  # garbage around a valid record
        wire = msg.to_json().decode()
        raw = rng.choice([wire + "x", "x" + wire, wire + wire, wire[::-1], wire + "\x00"])
    return "garbage", raw, False, None


def _mutate_version(kind: str, msg: Any, d: dict[str, Any], rng: random.Random) -> Mutation:
    d["schema_version"] = rng.choice([0, 2, -1, 10**6, "1", 1.0, 1.5, None, True])
    return "schema version", to_wire(rng, d), False, None


MUTATIONS: dict[str, Callable[[str, Any, dict[str, Any], random.Random], Mutation]] = {
    "truncated": _mutate_truncated,
    "wrong type": _mutate_wrong_type,
    "huge string": _mutate_huge_string,
    "unknown enum": _mutate_unknown_enum,
    "missing field": _mutate_missing,
    "empty id": _mutate_empty_id,
    "control char in id": _mutate_control_id,
    "surrogate": _mutate_surrogate,
    "deep nesting": _mutate_deep,
    "timestamp": _mutate_timestamp,
    "nan/infinity": _mutate_nan,
    "extra field": _mutate_extra,
    "huge integer": _mutate_huge_int,
    "not an object": _mutate_not_object,
    "other kind": _mutate_other_kind,
    "garbage": _mutate_garbage,
    "schema version": _mutate_version,
}


def mutate(kind: str, msg: Any, what: str, rng: random.Random) -> Mutation:
    """One bad (or doubtful) input made from the valid ``msg``."""
    return MUTATIONS[what](kind, msg, json.loads(msg.to_json()), rng)


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------

SEEDS = st.integers(0, 2**32 - 1)


@pytest.mark.parametrize("kind", KINDS)
def test_decode_fuzz(kind: str) -> None:
    """Each example: one valid message, then every mutation of it (choices seeded by hypothesis:
    cheaper than a hypothesis draw per choice, and still reproducible)."""

    @fuzz_settings(DECODE_EXAMPLES)
    @given(fields=VALID[kind], seed=SEEDS)
    def run(fields: dict[str, Any], seed: int) -> None:
        msg = build(kind, fields)
        wire = msg.to_json()
        out = check(wire, kind, "valid")
        assert out == msg and out.to_json() == wire
        rng = random.Random(seed)
        for what in MUTATIONS:
            label, raw, bad, names = mutate(kind, msg, what, rng)
            check(raw, kind, label, bad=bad, names=names)

    run()
    _FINISHED.add(f"decode:{kind}")


def test_decode_survives_pathological_inputs() -> None:
    """Single inputs too big for a generator: megabyte strings, 10**6-deep nesting."""
    ev = UserEvent(
        event_id="e", user_id="u", video_id="v", type="play", ts=datetime(2026, 1, 1, tzinfo=UTC)
    )
    base = json.loads(ev.to_json())
    cases: list[tuple[str | bytes, str | None]] = [
        (splice({**base, "watch_s": _SENTINEL}, "[" * 1_000_000 + "]" * 1_000_000), None),
        (splice({**base, "watch_s": _SENTINEL}, '{"a":' * 200_000 + "1" + "}" * 200_000), None),
        (json.dumps({**base, "user_id": "u" * 5_000_000}), "user_id"),
        (json.dumps({**base, "kind": "k\n" * 100_000}), None),  # quoted in the reason
        (json.dumps({**base, "x\u2028y\n": 1}), None),
        ("{" * 10 + "\x00", None),
        (b"\xff" * 1000, None),
        (b"\xef\xbb\xbf" + ev.to_json(), None),  # UTF-8 BOM: accepted or refused, never raised
        ("\ufeff" + ev.to_json().decode(), None),
        (json.dumps({**base, "watch_s": 1e-320}), None),
        ('{"kind":"event","kind":"forget"}', None),
    ]
    for raw, names in cases:
        check(raw, "event", "pathological", bad=names is not None, names=names)


# ---------------------------------------------------------------------------------------------
# read_log and drive: good and bad lines mixed
# ---------------------------------------------------------------------------------------------


@st.composite
def good_message(draw: Callable[..., Any], kinds: tuple[str, ...] = KINDS) -> tuple[str, Any]:
    kind = draw(st.sampled_from(kinds))
    return kind, build(kind, draw(VALID[kind]))


@st.composite
def log_line(draw: Callable[..., Any]) -> tuple[str, str, Any, bytes]:
    """(role, kind, message or must-fail flag, line bytes); role: good, bad, maybe, skip."""
    role = draw(st.sampled_from(["good", "good", "bad", "maybe", "skip", "binary"]))
    if role == "skip":
        return role, "", None, draw(st.sampled_from([b"", b"   ", b"# a comment", b"\t#x"]))
    kind, msg = draw(good_message())
    if role == "good":
        count(kind, "log line: valid")
        return role, kind, msg, msg.to_json()
    if role == "binary":
        count(kind, "log line: not UTF-8")
        junk = draw(st.binary(max_size=60)).replace(b"\n", b"").replace(b"\r", b"")
        return "bad", kind, True, b"\x00\xff" + junk + b"\xc3"
    what = draw(st.sampled_from(list(MUTATIONS)))
    label, raw, bad, _ = mutate(kind, msg, what, random.Random(draw(SEEDS)))
    count(kind, "log line: " + label)
    line = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    line = line.replace(b"\n", b"").replace(b"\r", b"")
    text = line.decode("utf-8", "surrogateescape").strip()
    if not text or text.startswith("#"):
        line = b"x" + line  # a line the reader would skip is no test of it
    return ("bad" if bad else "maybe"), kind, bad, line


def write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def expected_items(entries: list[tuple[str, str, Any, bytes]]) -> Iterator[tuple[int, Any]]:
    """(line number, message or the DecodeError a line must give) for every non-skipped line."""
    for lineno, (role, _kind, payload, line) in enumerate(entries, start=1):
        if role == "skip":
            continue
        if role == "good":
            yield lineno, payload
            continue
        text = line.decode("utf-8", "surrogateescape").strip()
        try:
            text.encode()
        except UnicodeEncodeError:
            yield lineno, DecodeError("not valid UTF-8")
            continue
        try:
            msg = decode(text)
        except DecodeError as exc:
            yield lineno, exc
            continue
        assert role == "maybe", f"line {lineno} should have been refused: {text[:200]!r}"
        yield lineno, msg


def check_log(out: list[Any], entries: list[tuple[str, str, Any, bytes]]) -> None:
    want = list(expected_items(entries))
    assert len(out) == len(want)
    for got, (lineno, exp) in zip(out, want, strict=True):
        if isinstance(exp, DecodeError):
            assert isinstance(got, BadLine), f"line {lineno}: got {got!r}"
            assert got.lineno == lineno
            assert got.reason and len(got.reason.splitlines()) == 1
            if not exp.reason.startswith("not valid UTF-8"):
                assert got.reason == exp.reason
            got.raw.encode("utf-8")  # printable in a bad-line report
        else:
            assert got == exp and got.to_json() == exp.to_json(), f"line {lineno}"


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzlogs")


def test_read_log_reports_every_bad_line_and_keeps_every_good_one(log_dir: Path) -> None:
    @fuzz_settings(LOG_EXAMPLES)
    @given(entries=st.lists(log_line(), min_size=5, max_size=40), gz=st.booleans())
    def run(entries: list[tuple[str, str, Any, bytes]], gz: bool) -> None:
        path = log_dir / ("log.jsonl.gz" if gz else "log.jsonl")
        write_lines(path, [e[3] for e in entries])
        check_log(list(read_log(path)), entries)

    run()
    _FINISHED.add("read_log")


# Small id alphabets, so that events hit published videos, unknown videos and repeated ids.
SMALL_IDS = {
    "video_id": st.sampled_from(
        [f"v{i}" for i in range(8)] + ["ghost", "\u202eevil", "\U0001f3ac"]
    ),
    "user_id": st.sampled_from(["u0", "u1", "u2", "\u05d0\u200f"]),
    "event_id": st.sampled_from([f"e{i}" for i in range(12)]),
}
DRIVE_TIMES = st.one_of(
    st.sampled_from(EDGE_TIMES),
    st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30), timezones=st.just(UTC)),
    st.datetimes(datetime(2026, 1, 1), datetime(2026, 1, 3), timezones=st.just(UTC)),
)


@st.composite
def drive_entry(draw: Callable[..., Any]) -> tuple[str, str, Any, bytes]:
    if draw(st.integers(0, 3)) == 0:
        return draw(log_line())
    kind = draw(st.sampled_from(["video", "event", "event", "event", "forget", "recommendations"]))
    fields = draw(VALID[kind])
    for name, ids in SMALL_IDS.items():
        if name in fields and not (kind == "recommendations" and name == "user_id"):
            fields[name] = draw(ids)
    if kind in ("event", "forget"):
        fields["ts"] = draw(DRIVE_TIMES)
    elif kind == "video":
        fields["published_at"] = draw(DRIVE_TIMES)
    msg = build(kind, fields)
    count(kind, "drive: valid")
    return "good", kind, msg, msg.to_json()


def expected_stats(messages: list[Any]) -> Counter[str]:
    """What ``drive`` must count: duplicates are per user; a forget clears the user's ids, and
    the user's events up to the forget's time are refused from then on (counted as duplicates:
    ``on_event`` returns nothing for them)."""
    want: Counter[str] = Counter()
    seen: dict[str, set[str]] = {}
    forgotten: dict[str, float] = {}
    for m in messages:
        if isinstance(m, VideoPublished):
            want["videos"] += 1
        elif isinstance(m, UserEvent):
            want["events"] += 1
            ids = seen.setdefault(m.user_id, set())
            cut = forgotten.get(m.user_id)
            if cut is not None and m.ts.timestamp() <= cut:
                want["duplicates"] += 1
                continue
            if m.event_id in ids:
                want["duplicates"] += 1
            ids.add(m.event_id)
        elif isinstance(m, ForgetUser):
            want["forgets"] += 1
            seen.pop(m.user_id, None)
            forgotten[m.user_id] = m.ts.timestamp()
        elif isinstance(m, BadLine):
            want["bad"] += 1
    return want


def test_drive_processes_every_good_record_and_reports_every_bad_one(log_dir: Path) -> None:
    @fuzz_settings(DRIVE_EXAMPLES)
    @given(entries=st.lists(drive_entry(), min_size=15, max_size=50))
    def run(entries: list[tuple[str, str, Any, bytes]]) -> None:
        path = log_dir / "drive.jsonl"
        write_lines(path, [e[3] for e in entries])
        messages = list(read_log(path))
        check_log(messages, entries)

        enc = HashingEncoder()
        index = VideoIndex(IndexSettings(path=None), dim=enc.dim)
        try:
            engine = Engine(EngineSettings(k=10), enc, index)
            bad: list[Any] = []
            published: list[Recommendations] = []
            stats = drive(
                messages,
                engine,
                on_bad=bad.append,
                on_recommendations=published.append,
                video_batch=4,
            )
            want = expected_stats(messages)
            DRIVEN.update(want)
            assert stats.videos == want["videos"] and stats.events == want["events"]
            assert stats.duplicates == want["duplicates"] and stats.forgets == want["forgets"]
            assert stats.bad == want["bad"] and bad == [
                m for m in messages if isinstance(m, BadLine)
            ]
            assert stats.published == want["events"] - want["duplicates"] == len(published)
            for recs in published:
                assert all(math.isfinite(it.score) for it in recs.items)
                assert decode(recs.to_json()).items == recs.items  # consumers can read it
            videos = {m.video_id for m in messages if isinstance(m, VideoPublished)}
            assert index.count() == len(videos)
            state = engine.to_state()
            for part in ("counts", "views"):
                assert np.isfinite(state["popularity"][part]).all()
            assert np.isfinite(state["cooc"]["total"]).all()
            assert np.isfinite(state["factors"]["items"]).all()
            assert np.isfinite(state["fusion"]["w"]).all()
            for user in ("u0", "u1", "nobody"):
                assert all(math.isfinite(it.score) for it in engine.recommend(user).items)
        finally:
            index.close()

    run()
    _FINISHED.add("drive")


def test_engine_takes_events_far_in_the_past_and_future_and_for_unknown_videos() -> None:
    """Jumps of ten thousand years in both directions, in one engine, with no crash."""
    enc = HashingEncoder()
    index = VideoIndex(IndexSettings(path=None), dim=enc.dim)
    try:
        engine = Engine(EngineSettings(k=10), enc, index)
        now = datetime(2026, 3, 1, tzinfo=UTC)
        order = [now, EDGE_TIMES[5], EDGE_TIMES[1], now, EDGE_TIMES[4], EDGE_TIMES[0], now]
        n = 0
        for step, ts in enumerate(order):
            engine.on_video(
                VideoPublished(video_id=f"v{step}", title=f"video {step}", published_at=ts)
            )
            for t in EventType:
                for vid in (f"v{step}", f"v{max(step - 1, 0)}", f"ghost{step}"):
                    n += 1
                    e = UserEvent(
                        event_id=f"e{n}", user_id=f"u{n % 3}", video_id=vid, type=t, ts=ts
                    )
                    recs = engine.on_event(e)
                    assert recs is not None
                    assert all(math.isfinite(it.score) for it in recs.items)
                    decode(recs.to_json())
        assert engine.n_events == n
        assert {f"ghost{s}" for s in range(len(order))} <= set(engine.catalog.ids)
        state = engine.to_state()
        assert np.isfinite(state["factors"]["items"]).all()
        assert np.isfinite(state["popularity"]["counts"]).all()
    finally:
        index.close()


def test_every_kind_got_at_least_ten_thousand_inputs(request: pytest.FixtureRequest) -> None:
    """Runs last in this module; the counts are printed at the end of the session too."""
    needed = {f"decode:{k}" for k in KINDS} | {"read_log", "drive"}
    if not needed <= _FINISHED:
        pytest.skip(f"only part of the fuzz module ran: {sorted(_FINISHED)}")
    for kind in KINDS:
        assert TRIED[kind] >= MIN_INPUTS_PER_KIND, (kind, TRIED[kind])
        labels = {label for k, label in TRIED_BY_MUTATION if k == kind}
        assert len(labels) >= 15, (kind, sorted(labels))


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not TRIED:
        return
    lines = ["fuzz inputs tried per message type (each decoded plainly and with expect=):"]
    lines += [
        f"  {kind:16s} {TRIED[kind]:7d}  (refused {REFUSED[kind]}, accepted "
        f"{TRIED[kind] - REFUSED[kind]})"
        for kind in KINDS
    ]
    lines.append(f"  {'total':16s} {sum(TRIED.values()):7d}")
    if DRIVEN:
        lines.append(
            "drive, summed over examples: " + ", ".join(f"{k} {n}" for k, n in DRIVEN.items())
        )
    plugins = request.config.pluginmanager
    reporter, capture = plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when the test output is not
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line)
    report = os.environ.get("VIDREC_FUZZ_REPORT")
    if report:
        by_label: dict[str, dict[str, int]] = {}
        for (kind, label), n in sorted(TRIED_BY_MUTATION.items()):
            by_label.setdefault(kind, {})[label] = n
        summary = {"inputs": TRIED, "refused": REFUSED, "by_mutation": by_label, "drive": DRIVEN}
        Path(report).write_text(json.dumps(summary, indent=1))
