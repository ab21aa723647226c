"""Micro-batched ranking (``Engine.step_many``, ``on_events``, ``publish_many``): a batch learns
each record in order, then ranks its users with one content search for all of them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import ForgetUser, UserEvent, VideoPublished
from schemas.wire import decode_item_deltas, decode_user_value
from workers.engine import Engine
from workers.evaluation import Evaluator
from workers.inprocess import drive

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def videos(n: int) -> list[VideoPublished]:
    return [
        VideoPublished(video_id=f"v{i}", title=f"video {i}", published_at=T0 - timedelta(hours=i))
        for i in range(n)
    ]


def events(n: int, n_users: int, n_videos: int, seed: int = 0, start: int = 0) -> list[UserEvent]:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    # Zipf-ish items, so that co-counts and popularity build up
    items = np.minimum(rng.zipf(1.3, n) - 1, n_videos - 1)
    types = rng.choice(["play", "complete", "like", "skip"], n, p=[0.6, 0.2, 0.1, 0.1])
    return [
        UserEvent(
            event_id=f"e{start + j}",
            user_id=f"u{users[j]}",
            video_id=f"v{items[j]}",
            type=str(types[j]),
            ts=T0 + timedelta(seconds=30 * (start + j)),
        )
        for j in range(n)
    ]


def loaded(make_engine, n_videos: int = 300, warm: int = 600, **settings) -> Engine:
    """An engine with random unit vectors (no exact ties in content) and a learned history."""
    eng = make_engine(**settings)
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((n_videos, eng.dim)).astype(np.float32)
    eng.on_videos(videos(n_videos), vectors=vecs)
    for e in events(warm, 40, n_videos, seed=1):
        eng.on_event(e)
    return eng


def clone(eng: Engine) -> Engine:
    """The same state and the same candidate cache (the cache is derived, never saved)."""
    other = Engine.from_state(copy.deepcopy(eng.to_state()), eng.encoder, eng.index)
    other._cands = copy.deepcopy(eng._cands)
    other._videos_version = eng._videos_version
    other._since_sweep = eng._since_sweep
    return other


def items(recs) -> list[str]:
    return [it.video_id for it in recs.items]


def test_a_batch_of_one_is_step(make_engine):
    a = loaded(make_engine)
    b = clone(a)
    for e in events(200, 40, 300, seed=2, start=10_000):
        one = a.step(e, 0.0)
        (many,) = b.step_many([e], [0.0])
        assert many.output_id == one.output_id and many.duplicate == one.duplicate
        assert (many.deltas is None) == (one.deltas is None)
        assert items(many.recs) == items(one.recs)
        assert many.recs.items == one.recs.items  # scores and sources too
    assert a.to_state()["users"] == b.to_state()["users"]


def test_on_events_of_one_is_on_event(make_engine):
    a = loaded(make_engine)
    b = clone(a)
    for e in events(100, 40, 300, seed=3, start=10_000):
        one = a.on_event(e)
        (many,) = b.on_events([e])
        assert (one is None) == (many is None)
        if one is not None:
            assert one.items == many.items


def test_ranking_users_together_gives_each_user_s_own_list(make_engine):
    """Same state, many users: one matrix product finds what one search per user finds."""
    eng = loaded(make_engine)
    users = sorted(eng.users)[:32]
    alone = clone(eng)
    together = eng.publish_many(users, [None] * len(users), [0.0] * len(users))
    for u, recs in zip(users, together, strict=True):
        assert items(recs) == items(alone.publish(u, None, 0.0))
        np.testing.assert_array_equal(eng.users[u].last_recs, alone.users[u].last_recs)


def test_the_batched_content_search_is_the_single_one(make_engine):
    eng = loaded(make_engine, n_videos=2000, warm=800)
    users = sorted(eng.users)[:16]
    profiles, seens = [], []
    for u in users:
        hist, seen = eng.user_view(eng.users[u])
        profiles.append(eng._profile(hist))
        seens.append(seen)
    many = eng._content_candidates_in_memory_many(np.stack(profiles), seens)
    for p, seen, got in zip(profiles, seens, many, strict=True):
        want = eng._content_candidates_in_memory(p, seen)
        assert sorted(got) == sorted(want)
        assert not set(got) & set(seen.tolist())


def test_the_batched_factor_top_is_top_items(make_engine):
    eng = loaded(make_engine, n_videos=2000, warm=800)
    eng.item_index("v-no-vector", 0.0)  # an item known only from events
    users = [*sorted(eng.factors.users)[:12], "nobody"]
    n_items = len(eng.catalog)
    tops = eng._factor_tops(users, eng.cfg.n_mf)
    for u, got in zip(users, tops, strict=True):
        want = eng.factors.top_items(u, eng.cfg.n_mf, n_items)
        assert got.dtype == want.dtype and sorted(got.tolist()) == sorted(want.tolist())
    assert len(tops[-1]) == 0 and len(tops[0]) == eng.cfg.n_mf


def test_a_batched_run_publishes_valid_lists_that_reflect_each_user_s_events(make_engine):
    a = loaded(make_engine)
    b = clone(a)
    stream = events(400, 40, 300, seed=4, start=10_000)
    one = [a.on_event(e) for e in stream]
    many: list = []
    for i in range(0, len(stream), 32):
        many += b.on_events(stream[i : i + 32])
    assert [r is None for r in one] == [r is None for r in many]
    seen: dict[str, set[str]] = {}
    same = 0
    for e, r1, r2 in zip(stream, one, many, strict=True):
        if e.type != "skip":
            seen.setdefault(e.user_id, set()).add(e.video_id)
        if r2 is None:
            continue
        got = items(r2)
        assert len(got) == len(set(got)) == 10
        assert not set(got) & seen.get(e.user_id, set())  # nothing the user has watched
        assert r2.trigger_event_id == e.event_id and r2.user_id == e.user_id
        same += len(set(got) & set(items(r1)))
    # only item state from the batch's other users differs: the lists stay close
    assert same >= 0.8 * 10 * sum(r is not None for r in many)
    assert a.to_state()["users"].keys() == b.to_state()["users"].keys()


def test_a_user_repeated_in_a_batch_gets_a_list_at_each_event(make_engine):
    a = loaded(make_engine)
    b = clone(a)
    x1, y1, x2 = (
        UserEvent(event_id=f"r{i}", user_id=u, video_id=v, type="play", ts=T0 + timedelta(days=1))
        for i, (u, v) in enumerate([("u1", "v5"), ("u2", "v6"), ("u1", "v7")])
    )
    steps = a.step_many([x1, y1, x2], [0.0] * 3)
    # the batch splits before the user's second event: the same as two batches
    split = b.step_many([x1, y1], [0.0] * 2) + b.step_many([x2], [0.0])
    assert [items(s.recs) for s in steps] == [items(s.recs) for s in split]
    assert "v5" not in items(steps[0].recs)
    assert not {"v5", "v7"} & set(items(steps[2].recs))
    assert items(steps[0].recs) != items(steps[2].recs)


def test_a_forget_inside_a_batch_comes_after_the_lists_before_it(make_engine):
    a = loaded(make_engine)
    b = clone(a)
    at = T0 + timedelta(days=1)
    x1 = UserEvent(event_id="f1", user_id="u1", video_id="v5", type="play", ts=at)
    forget = ForgetUser(user_id="u1", ts=at + timedelta(seconds=1))
    y1 = UserEvent(event_id="f2", user_id="u2", video_id="v6", type="play", ts=at)
    x0 = UserEvent(event_id="f0", user_id="u1", video_id="v8", type="play", ts=at)  # before
    steps = a.step_many([x1, forget, y1, x0], [0.0] * 4)
    assert [s.recs is not None for s in steps] == [True, False, True, False]
    assert steps[1].receipt is not None and steps[3].duplicate  # from before the forget
    (b1,) = b.step_many([x1], [0.0])
    (bf,) = b.step_many([forget], [0.0])
    (b2,) = b.step_many([y1], [0.0])
    assert items(steps[0].recs) == items(b1.recs)  # ranked before the forget erased u1
    assert items(steps[2].recs) == items(b2.recs)
    assert a.to_state()["users"] == b.to_state()["users"]


def test_a_duplicate_inside_a_batch_is_a_duplicate(make_engine):
    eng = loaded(make_engine)
    e = events(1, 40, 300, seed=5, start=20_000)[0]
    steps = eng.step_many([e, e], [0.0, 0.0])
    assert steps[0].recs is not None and steps[1].duplicate and steps[1].recs is None


def test_step_many_needs_a_start_time_per_record(make_engine):
    eng = loaded(make_engine)
    try:
        eng.step_many(events(2, 4, 300), [0.0])
    except ValueError as exc:
        assert "start times" in str(exc)
    else:
        raise AssertionError("no error")


def test_the_evaluator_scores_each_event_against_the_list_before_it(make_engine):
    """drive(event_batch=...) ends a batch at a user's second event, so every event is scored
    against the list its user held before it; the figures stay close to event by event."""
    log = [*videos(300), *events(1500, 40, 300, seed=6)]
    reports = []
    for batch in (1, 16):
        eng = make_engine()
        ev = Evaluator(ks=(10,))
        scored: list[tuple[str, list[str] | None]] = []
        on_event = ev.on_event

        def check(e, ev=ev, scored=scored, on_event=on_event) -> None:
            scored.append((e.event_id, ev._last.get(e.user_id)))
            on_event(e)

        ev.on_event = check  # type: ignore[method-assign]
        last: dict[str, list[str]] = {}
        expected: list[tuple[str, list[str] | None]] = []

        def publish(r, last=last) -> None:
            last[r.user_id] = items(r)

        stats = drive(log, eng, evaluator=ev, on_recommendations=publish, event_batch=batch)
        assert stats.events == 1500 and stats.published + stats.duplicates == 1500
        reports.append(ev.report())
        if batch > 1:
            # replay the published lists in order: each scored list is its user's previous one
            expected.clear()
            last.clear()
            eng2 = make_engine()
            got: list = []
            drive(log, eng2, on_recommendations=got.append, event_batch=batch)
            held: dict[str, list[str]] = {}
            by_event = {r.trigger_event_id: r for r in got}
            for m in log[300:]:
                expected.append((m.event_id, held.get(m.user_id)))
                if m.event_id in by_event:
                    held[m.user_id] = items(by_event[m.event_id])
            assert scored == expected
    assert abs(reports[0]["hr@10"] - reports[1]["hr@10"]) <= 0.05


# -- the worker's adapter: one engine call per micro-batch ---------------------------------------
def _adapters(make_engine):
    from test_agents import _videos
    from test_engine import planted_log

    from workers.adapter import EngineAdapter

    log = planted_log()
    pair = []
    for _ in range(2):
        eng = make_engine()
        eng.on_videos(_videos(log))
        pair.append(EngineAdapter(eng, origin="w1"))
    return log, pair


def _records(msgs: list, first_offset: int = 0) -> list:
    from test_agents import _meta

    return [(m.user_id.encode(), m.to_json(), _meta(first_offset + n)) for n, m in enumerate(msgs)]


def test_the_adapter_s_batch_of_one_is_its_record_by_record_path(make_engine):
    from test_agents import _events

    log, (one, many) = _adapters(make_engine)
    t1: dict[bytes, bytes] = {}
    t2: dict[bytes, bytes] = {}
    for rec in _records(_events(log)[:60]):
        a = one.on_user_record(*rec, t1)
        b = many.on_user_records([rec], t2)
        assert [(o.stage, o.key) for o in a] == [(o.stage, o.key) for o in b]
        for x, y in zip(a, b, strict=True):
            if x.stage == "recommendations":
                assert json.loads(x.value)["items"] == json.loads(y.value)["items"]
    assert t1.keys() == t2.keys()
    for k in t1:
        assert decode_user_value(t1[k])[0]["user"] == decode_user_value(t2[k])[0]["user"]


def test_the_adapter_handles_a_micro_batch_record_by_record_with_one_engine_call(make_engine):
    """Dead letters, duplicates and a forget keep their place; each record's outputs and table
    write are made in record order (``before_write`` sees them), the engine is called once."""
    from test_agents import _by_stage, _events, _meta

    from schemas.wire import DEAD_LETTERS, ERASURES, ITEM_DELTAS, RECOMMENDATIONS

    log, (one, many) = _adapters(make_engine)
    events = _events(log)
    forget = ForgetUser(user_id="u1", ts=events[40].ts + timedelta(minutes=1))
    msgs = [*events[:40], events[3], forget, *events[40:50]]
    recs = _records(msgs)
    bad = (b"u2", b"\xff not json", _meta(999))
    recs.insert(20, bad)
    t1: dict[bytes, bytes] = {}
    t2: dict[bytes, bytes] = {}
    expected: list = []
    for i in range(0, len(recs), 16):
        one.begin_batch()
        for rec in recs[i : i + 16]:
            expected += one.on_user_record(*rec, t1)
        one.end_batch()
    calls, seen = [], []
    step_many = many.engine.step_many

    def counted(msgs, t0s):
        calls.append(len(msgs))
        return step_many(msgs, t0s)

    many.engine.step_many = counted  # type: ignore[method-assign]
    got: list = []
    for i in range(0, len(recs), 16):
        many.begin_batch()
        got += many.on_user_records(recs[i : i + 16], t2, seen.append)
        many.end_batch()
    assert calls == [16, 15, 16, 5]  # one engine call per batch, without the dead letter
    assert [m.offset for m in seen] == [r[2].offset for r in recs if r is not bad]
    assert [(o.stage, o.key) for o in got] == [(o.stage, o.key) for o in expected]
    assert len(_by_stage(got, DEAD_LETTERS)) == 1 and len(_by_stage(got, ERASURES)) == 1
    assert len(_by_stage(got, RECOMMENDATIONS)) == len(_by_stage(expected, RECOMMENDATIONS))
    assert {decode_item_deltas(o.value)[2] for o in _by_stage(got, ITEM_DELTAS)} == {
        decode_item_deltas(o.value)[2] for o in _by_stage(expected, ITEM_DELTAS)
    }
    assert one.counts == many.counts
    assert t1.keys() == t2.keys()
    for k in t1:
        (a, box_a), (b, box_b) = decode_user_value(t1[k]), decode_user_value(t2[k])
        assert a["user"]["events"] == b["user"]["events"]
        assert [x[0] for x in box_a] == [x[0] for x in box_b]
    assert decode_user_value(t2[b"u1"])[0]["user"].get("forgotten_at") is not None


def test_vidrec_run_event_batch_publishes_a_list_per_event(tmp_path, monkeypatch, capsys):
    """`vidrec run --event-batch N` takes the batched path and still answers every event, with
    each list holding none of the videos its user had watched."""
    from streams.cli import main

    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", "hashing")
    figures = {}
    for batch in ("1", "16"):
        out = tmp_path / f"recs-{batch}.jsonl"
        args = ["run", "--limit", "3000", "--quiet", "--json", "--out", str(out)]
        assert main([*args, "--event-batch", batch]) == 0
        summary = json.loads(capsys.readouterr().out)
        figures[batch] = summary
        assert summary["run"]["published"] == summary["run"]["events"] > 1000
        assert summary["evaluation"]["lists_with_seen"] == 0
    assert figures["1"]["run"]["events"] == figures["16"]["run"]["events"]
    with pytest.raises(SystemExit):
        main(["run", "--event-batch", "0"])
