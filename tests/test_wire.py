"""The internal records' codecs (``schemas.wire``): msgpack version 2, and version 1 JSON that
retained topics and changelogs still hold during a rolling upgrade."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec
import numpy as np
import pytest
from test_engine import planted_log

from schemas import UserEvent, VideoPublished
from schemas.wire import (
    ITEM_DELTAS,
    ORIGIN_HEADER,
    WIRE_VERSION,
    ItemDeltas,
    decode_item_deltas,
    decode_user_value,
    encode_item_deltas,
    encode_user_value,
)
from workers.adapter import EngineAdapter, Meta, Out


def _v1_deltas(deltas: ItemDeltas, user_id: str, event_id: str, origin: str) -> bytes:
    """An ``item-deltas`` record as version 1 wrote it (JSON, gradients as Python floats)."""
    d = {"v": 1, "origin": origin, "user_id": user_id, "event_id": event_id}
    return json.dumps({**d, "deltas": deltas.to_dict()}, separators=(",", ":")).encode()


def _v1_user_value(snap: dict[str, Any], outbox: list[tuple[str, Out]]) -> bytes:
    """A users-table value as version 1 wrote it (JSON, the outbox values as JSON text, its
    item deltas version 1 records without an origin header)."""
    box = []
    for eid, o in outbox:
        value, headers = o.value, o.headers
        if o.stage == ITEM_DELTAS and value is not None:
            value = _v1_deltas(*_reorder(decode_item_deltas(value)))
            headers = {k: v for k, v in headers.items() if k != ORIGIN_HEADER}
        box.append(
            {
                "event_id": eid,
                "stage": o.stage,
                "value": None if value is None else value.decode(),
                "headers": {k: v.decode() for k, v in headers.items()},
            }
        )
    return json.dumps({**snap, "outbox": box}, separators=(",", ":")).encode()


def _reorder(rec: tuple[str, str, str, ItemDeltas]) -> tuple[ItemDeltas, str, str, str]:
    origin, user_id, event_id, deltas = rec
    return deltas, user_id, event_id, origin


def _plain(o: Out) -> tuple[str, Any, dict[str, bytes]]:
    """An output comparable across versions: item deltas decoded, the origin header dropped."""
    if o.stage == ITEM_DELTAS and o.value is not None:
        origin, user_id, event_id, d = decode_item_deltas(o.value)
        value: Any = (origin, user_id, event_id, d.to_dict())
    else:
        value = o.value
    return o.stage, value, {k: v for k, v in o.headers.items() if k != ORIGIN_HEADER}


def _real_deltas(make_engine: Any) -> list[tuple[str, str, ItemDeltas]]:
    """Item deltas of a planted log's events, as the engine's user step makes them."""
    eng = make_engine()
    log = planted_log()
    eng.on_videos([m for m in log if isinstance(m, VideoPublished)])
    out = []
    for m in log:
        if isinstance(m, UserEvent):
            d = eng.user_step(m)
            assert d is not None
            eng.apply_item_deltas(d)
            eng.publish(m.user_id, m.event_id, 0.0)
            out.append((m.user_id, m.event_id, d))
    return out


def _assert_same(a: ItemDeltas, b: ItemDeltas) -> None:
    assert [tuple(x) for x in a.cooc] == [tuple(x) for x in b.cooc]
    assert [tuple(x) for x in a.popularity] == [tuple(x) for x in b.popularity]
    assert [v for v, _, _ in a.factors] == [v for v, _, _ in b.factors]
    assert [bias for _, _, bias in a.factors] == [bias for _, _, bias in b.factors]
    for (_, ga, _), (_, gb, _) in zip(a.factors, b.factors, strict=True):
        assert isinstance(gb, np.ndarray) and gb.dtype == np.float32
        np.testing.assert_array_equal(ga, gb)  # bit for bit: float32 both ways
    assert a.fusion == b.fusion
    assert (a.ts, a.sign, a.positive) == (b.ts, b.sign, b.positive)


def test_item_deltas_round_trip_as_msgpack_and_read_version_1(make_engine):
    real = _real_deltas(make_engine)
    assert any(d.factors for *_, d in real) and any(d.fusion for *_, d in real)
    v2_bytes = v1_bytes = 0
    for user, event, d in real:
        raw = encode_item_deltas(d, user, event, "w1")
        assert raw[:1] != b"{"  # not JSON
        assert msgspec.msgpack.decode(raw)[0] == WIRE_VERSION == 2
        origin, u, e, back = decode_item_deltas(raw)
        assert (origin, u, e) == ("w1", user, event)
        _assert_same(d, back)
        old = _v1_deltas(d, user, event, "w0")
        origin, u, e, back1 = decode_item_deltas(old)
        assert (origin, u, e) == ("w0", user, event)
        _assert_same(d, back1)
        v2_bytes, v1_bytes = v2_bytes + len(raw), v1_bytes + len(old)
    assert v2_bytes < v1_bytes / 2


def test_a_forget_and_an_empty_record_round_trip():
    d = ItemDeltas(cooc=[("a", "b", -0.5, 3.0)], popularity=[("a", 1.0, 3.0)], ts=4.0, sign=-1)
    _assert_same(d, decode_item_deltas(encode_item_deltas(d, "u", "e", "o"))[3])
    empty = ItemDeltas()
    back = decode_item_deltas(encode_item_deltas(empty, "u", "e", "o"))[3]
    assert back.is_empty() and back.factors == []


def test_a_newer_trailing_field_is_ignored():
    d = ItemDeltas(factors=[("a", np.arange(4, dtype=np.float32), 0.25)], ts=1.0)
    rec = msgspec.msgpack.decode(encode_item_deltas(d, "u", "e", "o"))
    rec[4].append("a field of version 3")
    rec.append({"also": "new"})
    _assert_same(d, decode_item_deltas(msgspec.msgpack.encode(rec))[3])


@pytest.mark.parametrize(
    "mangle, needle",
    [
        (lambda raw: b"\x00\xff\x13garbage", "msgpack"),
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: b"", "msgpack"),
        (lambda raw: msgspec.msgpack.encode([2, "o", 7, "e", []]), "Expected `str`"),
        (lambda raw: _with_grads(raw, b"\x00" * 5), "float32"),
        (lambda raw: b"{not json", "Expecting"),
    ],
)
def test_malformed_item_deltas_raise_a_clear_value_error(mangle, needle):
    d = ItemDeltas(factors=[("a", np.ones(8, np.float32), 0.5), ("b", np.ones(8, np.float32), 0)])
    raw = mangle(encode_item_deltas(d, "u", "e", "o"))
    with pytest.raises(ValueError, match=needle):
        decode_item_deltas(raw)


def _with_grads(raw: bytes, grads: bytes) -> bytes:
    rec = msgspec.msgpack.decode(raw)
    rec[4][2][1] = grads
    return msgspec.msgpack.encode(rec)


def test_replicated_deltas_give_the_origin_engine_s_factors_bit_for_bit(make_engine):
    """float32 rows on the wire: a replica applies exactly what the origin applied."""
    log = planted_log()
    a, b = make_engine(), make_engine()
    for eng in (a, b):
        eng.on_videos([m for m in log if isinstance(m, VideoPublished)])
    ad_a, ad_b = EngineAdapter(a, origin="a"), EngineAdapter(b, origin="b")
    outs = []
    for n, e in enumerate(m for m in log if isinstance(m, UserEvent)):
        outs += ad_a.on_user_record(e.user_id.encode(), e.to_json(), Meta("t", 0, n), {})
    shipped = [o for o in outs if o.stage == ITEM_DELTAS]
    assert all(o.headers == {ORIGIN_HEADER: b"a"} for o in shipped)
    assert ad_b.on_replicated(ITEM_DELTAS, [o.value for o in shipped]) == len(shipped)
    n = len(a.catalog)
    np.testing.assert_array_equal(a.factors.items[:n], b.factors.items[:n])
    np.testing.assert_array_equal(a.factors.bias[:n], b.factors.bias[:n])


def test_own_deltas_are_skipped_by_their_header_without_decoding(make_engine, caplog):
    ad = EngineAdapter(make_engine(), origin="w1")
    d = encode_item_deltas(ItemDeltas(popularity=[("v0", 1.0, 1.0)], ts=1.0), "u", "e1", "w2")
    values = [b"\x00not msgpack", d, b"\x00not msgpack either"]
    headers = [[(ORIGIN_HEADER, b"w1")], [(ORIGIN_HEADER, b"w2")], [("other", b"x")]]
    with caplog.at_level(logging.ERROR):
        assert ad.on_replicated(ITEM_DELTAS, values, headers) == 1
    # the first is this worker's (never decoded); the third has no origin header: decoded,
    # unreadable, logged and skipped like before
    assert ad.counts["deltas_skipped"] == 1 and ad.counts["deltas_replicated"] == 1
    assert len([r for r in caplog.records if "unreadable" in r.getMessage()]) == 1
    # without headers (an older caller) the body's origin still keeps a worker's own out
    own = encode_item_deltas(ItemDeltas(popularity=[("v0", 1.0, 1.0)], ts=1.0), "u", "e2", "w1")
    assert ad.on_replicated(ITEM_DELTAS, [own]) == 0


def test_users_table_value_round_trips_and_reads_version_1(make_engine):
    eng = make_engine()
    log = planted_log()
    eng.on_videos([m for m in log if isinstance(m, VideoPublished)])
    ad = EngineAdapter(eng, origin="w1")
    table: dict[bytes, bytes] = {}
    events = [m for m in log if isinstance(m, UserEvent) and m.user_id == "u0"]
    for n, e in enumerate(events[:5]):
        outs = ad.on_user_record(b"u0", e.to_json(), Meta("t", 0, n), table)
    raw = table[b"u0"]
    assert raw[:1] != b"{"
    snap, outbox = decode_user_value(raw)
    assert snap == eng.snapshot_user("u0")
    assert [(v, h) for _, _, v, h in outbox] == [(o.value, o.headers) for o in outs]
    assert encode_user_value(snap, outbox) == raw
    # the same user as version 1 wrote it: read back alike
    old = _v1_user_value(snap, [(eid, Out(stage, b"u0", v, h)) for eid, stage, v, h in outbox])
    assert old[:1] == b"{"
    snap1, outbox1 = decode_user_value(old)
    assert snap1 == snap and len(outbox1) == len(outbox)
    for (e1, s1, v1, h1), (e2, s2, v2, h2) in zip(outbox1, outbox, strict=True):
        o1, o2 = Out(s1, b"u0", v1, h1), Out(s2, b"u0", v2, h2)
        assert e1 == e2 and _plain(o1) == _plain(o2)
    with pytest.raises(ValueError, match="users-table"):
        decode_user_value(b"\x00garbage")


def test_a_worker_resumes_a_user_from_a_version_1_table_value(make_engine):
    """A changelog written before version 2: the user and the outbox load, and a redelivered
    event sends its outputs again, as they were."""
    log = planted_log()
    a, b = make_engine(), make_engine()
    for eng in (a, b):
        eng.on_videos([m for m in log if isinstance(m, VideoPublished)])
    ad_a = EngineAdapter(a, origin="a")
    table: dict[bytes, bytes] = {}
    events = [m for m in log if isinstance(m, UserEvent) and m.user_id == "u0"]
    outs = []
    for n, e in enumerate(events[:6]):
        outs = ad_a.on_user_record(b"u0", e.to_json(), Meta("t", 0, n), table)
    snap, outbox = decode_user_value(table[b"u0"])
    old_table = {
        b"u0": _v1_user_value(snap, [(eid, Out(s, b"u0", v, h)) for eid, s, v, h in outbox])
    }
    ad_b = EngineAdapter(b, origin="b")
    again = ad_b.on_user_record(b"u0", events[5].to_json(), Meta("t", 0, 5), old_table)
    assert [_plain(o) for o in again] == [_plain(o) for o in outs]
    assert ITEM_DELTAS in [o.stage for o in again]
    assert b.snapshot_user("u0") == a.snapshot_user("u0")
    # its next event is saved as version 2
    ad_b.on_user_record(b"u0", events[6].to_json(), Meta("t", 0, 6), old_table)
    assert old_table[b"u0"][:1] != b"{"
