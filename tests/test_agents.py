"""The worker's adapter (records -> engine -> records) and its faust agents, without a broker.

The adapter is tested as plain code with a dict for the users table; the agents with faust's
``agent.test_context()`` (memory store, an ``AsyncMock`` per outbound topic recording the
producer's sends).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from unittest.mock import AsyncMock

import numpy as np
import pytest
from test_engine import T0, planted_log, video

from schemas import (
    ErasureReceipt,
    ForgetUser,
    Recommendations,
    UserEvent,
    VideoPublished,
    decode,
)
from schemas.wire import (
    DEAD_LETTERS,
    ERASURES,
    ITEM_DELTAS,
    RECOMMENDATIONS,
    TRIGGER_TS_HEADER,
    VIDEO_VECTORS,
    DeadLetter,
    decode_item_deltas,
    decode_user_value,
)
from streams.wire.topics import Topics, TopicSettings
from workers.adapter import EngineAdapter, Meta, Out
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.settings import EngineSettings


def _videos(log: list) -> list[VideoPublished]:
    return [m for m in log if isinstance(m, VideoPublished)]


def _events(log: list) -> list[UserEvent]:
    return [m for m in log if isinstance(m, UserEvent)]


def _meta(offset: int = 0, partition: int = 0, ts_ms: float | None = 1.7e12) -> Meta:
    return Meta("t.user-events", partition, offset, ts_ms)


def _by_stage(outs: list[Out], stage: str) -> list[Out]:
    return [o for o in outs if o.stage == stage]


def _feed(adapter: EngineAdapter, events: list, table: dict) -> list[Out]:
    outs: list[Out] = []
    for n, e in enumerate(events):
        outs += adapter.on_user_record(e.user_id.encode(), e.to_json(), _meta(n), table)
    return outs


# -- user events ----------------------------------------------------------------------------------
def test_event_publishes_a_list_ships_deltas_and_saves_the_user(make_engine):
    eng = make_engine()
    log = planted_log()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng, origin="w1")
    table: dict[bytes, bytes] = {}
    events = _events(log)
    outs = _feed(ad, events[:30], table)

    recs = _by_stage(outs, RECOMMENDATIONS)
    assert len(recs) == 30
    first = recs[0]
    assert first.key == events[0].user_id.encode()
    assert first.headers[TRIGGER_TS_HEADER] == b"1700000000000"
    msg = decode(first.value, expect=Recommendations)
    assert msg.trigger_event_id == events[0].event_id and len(msg.items) == 10

    deltas = _by_stage(outs, ITEM_DELTAS)
    assert deltas and all(decode_item_deltas(d.value)[0] == "w1" for d in deltas)
    assert {decode_item_deltas(d.value)[2] for d in deltas} <= {e.event_id for e in events[:30]}
    assert not _by_stage(outs, DEAD_LETTERS)

    snap, _ = decode_user_value(table[b"u0"])
    assert snap["user"]["events"] == sum(e.user_id == "u0" for e in events[:30])
    assert snap["user"]["last_recs"]  # saved after the list was published
    assert snap["factors"] is not None and len(snap["factors"]) == eng.settings.factors_dim


def test_the_adapter_publishes_what_the_engine_publishes(make_engine):
    """Same function per event: the adapter's lists equal the embedded path's lists."""
    a, b = make_engine(), make_engine()
    log = planted_log()
    a.on_videos(_videos(log))
    b.on_videos(_videos(log))
    ad = EngineAdapter(b)
    table: dict[bytes, bytes] = {}
    for n, e in enumerate(_events(log)):
        expected = a.on_event(e)
        outs = ad.on_user_record(e.user_id.encode(), e.to_json(), _meta(n), table)
        got = decode(_by_stage(outs, RECOMMENDATIONS)[0].value, expect=Recommendations)
        assert [it.video_id for it in got.items] == [it.video_id for it in expected.items]


def test_duplicate_event_sends_nothing_once_its_outputs_are_delivered(make_engine):
    eng = make_engine()
    log = planted_log()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng)
    table: dict[bytes, bytes] = {}
    e = _events(log)[0]
    assert ad.on_user_record(b"u0", e.to_json(), _meta(0), table)
    ad.delivered()
    assert ad.on_user_record(b"u0", e.to_json(), _meta(1), table) == []
    assert ad.counts["duplicates"] == 1


def test_a_duplicate_whose_outputs_may_be_lost_sends_them_again_unchanged(make_engine):
    """A crash after the table write and before the outputs reached the broker: the restarted
    worker counts the redelivered event as a duplicate and sends the stored outputs, once
    per worker for the deltas (applied to its own engine too), the list exactly as built."""
    log = planted_log()
    events = _events(log)
    a, b = make_engine(), make_engine()
    a.on_videos(_videos(log))
    b.on_videos(_videos(log))
    table: dict[bytes, bytes] = {}
    ad_a = EngineAdapter(a, origin="a")
    shipped = _feed(ad_a, events[:11], table)
    e = events[11]
    lost = ad_a.on_user_record(e.user_id.encode(), e.to_json(), _meta(11), table)
    assert {o.stage for o in lost} == {ITEM_DELTAS, RECOMMENDATIONS}

    ad_b = EngineAdapter(b, origin="b")  # the restarted worker, caught up with the topic
    ad_b.on_replicated(ITEM_DELTAS, [o.value for o in _by_stage(shipped, ITEM_DELTAS)])
    before = b.popularity.normalised(np.arange(len(b.catalog))).copy()
    again = ad_b.on_user_record(e.user_id.encode(), e.to_json(), _meta(12), table)
    assert [(o.stage, o.value, o.headers) for o in again] == [
        (o.stage, o.value, o.headers) for o in lost
    ]
    assert ad_b.counts["duplicates"] == 1 and ad_b.counts["resent"] == 2
    assert not np.array_equal(b.popularity.normalised(np.arange(len(b.catalog))), before)
    np.testing.assert_allclose(
        b.popularity.normalised(np.arange(len(b.catalog))),
        a.popularity.normalised(np.arange(len(a.catalog))),
        rtol=1e-6,
    )
    # a second redelivery: the list once more, the deltas not (already applied here)
    third = ad_b.on_user_record(e.user_id.encode(), e.to_json(), _meta(13), table)
    assert [o.stage for o in third] == [RECOMMENDATIONS]
    assert b.users[e.user_id].events == a.users[e.user_id].events


def test_outputs_resent_in_a_batch_stay_in_the_outbox_a_new_event_writes(make_engine):
    """Two crashes in a row: worker a writes the table and dies before its outputs reach the
    broker; worker b resends them in a micro-batch that also holds a new event of the same
    user, writes that user's snapshot, and dies before its sends are delivered too. The
    snapshot b wrote must still hold the resent outputs, or worker c, counting the event as a
    duplicate, has nothing to send and the event's list is lost for good."""
    log = planted_log()
    events = [e for e in _events(log) if e.user_id == "u0"]
    engines = [make_engine() for _ in range(3)]
    for eng in engines:
        eng.on_videos(_videos(log))
    table: dict[bytes, bytes] = {}
    ad_a, ad_b, ad_c = (EngineAdapter(eng, origin=o) for eng, o in zip(engines, "abc", strict=True))
    shipped = _feed(ad_a, events[:4], table)
    ad_a.delivered()
    e, new = events[4], events[5]
    ad_a.begin_batch()
    lost = ad_a.on_user_record(b"u0", e.to_json(), _meta(4), table)  # then a dies
    ad_a.end_batch()
    lost_list = _by_stage(lost, RECOMMENDATIONS)
    assert lost_list

    replica = [o.value for o in _by_stage(shipped + lost, ITEM_DELTAS)]
    ad_b.on_replicated(ITEM_DELTAS, replica)
    ad_b.begin_batch()
    resent = ad_b.on_user_record(b"u0", e.to_json(), _meta(4), table)
    fresh = ad_b.on_user_record(b"u0", new.to_json(), _meta(5), table)
    ad_b.end_batch()
    ad_b.delivered()  # the batch's flush (of the previous batch's outputs), then b dies
    assert _by_stage(resent, RECOMMENDATIONS) == lost_list and fresh

    ad_c.on_replicated(ITEM_DELTAS, replica + [o.value for o in _by_stage(fresh, ITEM_DELTAS)])
    ad_c.begin_batch()
    again = ad_c.on_user_record(b"u0", e.to_json(), _meta(4), table)
    ad_c.end_batch()
    assert _by_stage(again, RECOMMENDATIONS) == lost_list


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"u0", b"{not json", "not valid JSON"),
        (b"u0", b'{"kind":"event","user_id":"u0","video_id":"v1","type":"play"}', "event_id"),
        (
            b"u0",
            b'{"kind":"event","event_id":"x","user_id":"u0","video_id":"v1",'
            b'"type":"stare","ts":"2026-03-01T00:00:00Z"}',
            "type",
        ),
        (b"v1", video(1, 0, T0).to_json(), "does not belong"),
        (
            b"u9",
            UserEvent(event_id="x", user_id="u0", video_id="v1", type="play", ts=T0).to_json(),
            "keyed by user",
        ),
        (b"u0", None, "not valid JSON"),
    ],
)
def test_bad_record_becomes_a_dead_letter_and_the_next_one_is_served(
    make_engine, key, value, reason
):
    eng = make_engine()
    log = planted_log()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng)
    table: dict[bytes, bytes] = {}
    outs = ad.on_user_record(key, value, Meta("t.user-events", 3, 41, None), table)
    assert [o.stage for o in outs] == [DEAD_LETTERS]
    dl = DeadLetter.from_json(outs[0].value)
    assert (dl.topic, dl.partition, dl.offset) == ("t.user-events", 3, 41)
    assert reason in dl.reason
    assert dl.value == value and dl.key == key
    assert outs[0].key == key
    assert not table and not eng.users
    good = _events(log)[0]
    outs = ad.on_user_record(b"u0", good.to_json(), _meta(42), table)
    assert _by_stage(outs, RECOMMENDATIONS)


def test_a_cold_engine_resumes_users_from_the_table(make_engine):
    """A restarted worker (new engine, same table) continues each user where it stopped."""
    log = planted_log()
    events = _events(log)
    half = len(events) // 2
    a = make_engine()
    a.on_videos(_videos(log))
    table: dict[bytes, bytes] = {}
    _feed(EngineAdapter(a), events[:half], table)

    b = make_engine()
    b.on_videos(_videos(log))
    ad_b = EngineAdapter(b)
    # an event the first worker already processed is recognised as a duplicate: not learned
    # again, its stored outputs (the first worker's) are sent again in case they were lost
    old = events[half - 1]
    again = ad_b.on_user_record(old.user_id.encode(), old.to_json(), _meta(0), table)
    assert ad_b.counts["duplicates"] == 1 and ad_b.counts["resent"] == len(again)
    assert (
        json.loads(_by_stage(again, RECOMMENDATIONS)[0].value)["trigger_event_id"] == old.event_id
    )
    assert b.users[old.user_id].events == a.users[old.user_id].events
    assert b.history_of(old.user_id) == a.history_of(old.user_id)
    np.testing.assert_array_equal(b.factors.users[old.user_id], a.factors.users[old.user_id])
    # and a new one is learned on top of the restored history
    nxt = next(e for e in events[half:] if e.user_id == old.user_id)
    ad_b.on_user_record(nxt.user_id.encode(), nxt.to_json(), _meta(1), table)
    assert b.users[old.user_id].events == a.users[old.user_id].events + 1


def test_evicted_users_are_reloaded_from_the_table_not_from_memory(make_engine):
    eng = make_engine()
    log = planted_log()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng)
    table: dict[bytes, bytes] = {}
    events = _events(log)
    for n, e in enumerate(events[:24]):
        ad.on_user_record(
            e.user_id.encode(), e.to_json(), _meta(n, partition=int(e.user_id[1:]) % 2), table
        )
    evicted = ad.evict_partitions([1])
    odd = {e.user_id for e in events[:24] if int(e.user_id[1:]) % 2}
    assert evicted == len(odd)
    assert not odd & set(eng.users) and not odd & set(eng.factors.users)
    assert {e.user_id for e in events[:24]} - odd <= set(eng.users)
    u = sorted(odd)[0]
    nxt = next(e for e in events[24:] if e.user_id == u)
    ad.on_user_record(u.encode(), nxt.to_json(), _meta(99, partition=1), table)
    assert eng.users[u].events == 3  # two before the eviction, restored, plus this one


def test_forget_erases_the_user_from_engine_and_table(make_engine):
    eng = make_engine()
    log = planted_log()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng)
    table: dict[bytes, bytes] = {}
    _feed(ad, _events(log)[:40], table)
    assert b"u0" in table
    eng.users.pop("u0")  # a cold engine: the forget must reach the table too
    forget = ForgetUser(user_id="u0", ts=T0 + timedelta(days=1))
    outs = ad.on_user_record(b"u0", forget.to_json(), _meta(50), table)
    # the user's share of the item state goes to every worker; the list is tombstoned
    assert [o.stage for o in outs] == [ITEM_DELTAS, RECOMMENDATIONS, ERASURES]
    assert decode_item_deltas(outs[0].value)[3].sign == -1
    assert outs[1].key == b"u0" and outs[1].value is None
    receipt = decode(outs[2].value, expect=ErasureReceipt)
    assert receipt.user_id == "u0" and receipt.requested_at == forget.ts
    assert receipt.erased["events"] > 0 and receipt.erased["cooc_increments"] > 0
    assert "u0" not in eng.factors.users
    # what is left, in the engine and in the table, is the tombstone: the time of the forget
    snap, _ = decode_user_value(table[b"u0"])
    assert snap["factors"] is None and snap["user"]["ledger"]["items"] == []
    assert snap["user"]["dedup"] == [] and snap["user"]["forgotten_at"] == forget.ts.timestamp()
    assert not eng.history_of("u0")
    assert ad.counts["forgets"] == 1
    # a redelivered pre-forget event is not learned again
    first = _events(log)[0]
    assert first.user_id == "u0"
    assert ad.on_user_record(b"u0", first.to_json(), _meta(51), table) == []
    assert not eng.history_of("u0")


def test_a_forget_reaches_the_item_state_of_every_worker(make_engine):
    """Worker b never held the user: the subtracting deltas it replicates erase their share."""
    log = planted_log()
    a, b, never = make_engine(), make_engine(), make_engine()
    for eng in (a, b, never):
        eng.on_videos(_videos(log))
    ad_a, ad_b = EngineAdapter(a, origin="a"), EngineAdapter(b, origin="b")
    events = _events(log)
    outs = _feed(ad_a, events, {})
    forget = ForgetUser(user_id="u1", ts=T0 + timedelta(days=1))
    outs += ad_a.on_user_record(b"u1", forget.to_json(), _meta(999), {})
    deltas = [o.value for o in _by_stage(outs, ITEM_DELTAS)]
    ad_b.on_replicated(ITEM_DELTAS, deltas)
    ad_b.on_replicated(ITEM_DELTAS, deltas)  # redelivered: applied once
    for e in events:
        if e.user_id != "u1":
            never.on_event(e)
    at = a.now

    def counts(eng: Engine) -> dict:
        ids = eng.catalog.ids
        d = eng.cooc.clock.deflate(at)
        return {
            (ids[x], ids[y]): v * d
            for x, row in eng.cooc.to_state()["nb"].items()
            for y, v in row.items()
        }

    want = counts(never)
    for got in (counts(a), counts(b)):
        assert set(got) == set(want)
        assert all(np.isclose(got[k], want[k], rtol=1e-9) for k in want)


# -- replication -------------------------------------------------------------------------------
def test_two_workers_exchanging_deltas_hold_the_same_item_state_as_one_engine(make_engine):
    """Users split over two adapters; each applies the other's deltas: counts converge."""
    log = planted_log()
    one, a, b = make_engine(), make_engine(), make_engine()
    for eng in (one, a, b):
        eng.on_videos(_videos(log))
    ad_a, ad_b = EngineAdapter(a, origin="a"), EngineAdapter(b, origin="b")
    ta: dict[bytes, bytes] = {}
    tb: dict[bytes, bytes] = {}
    shipped: list[bytes] = []
    for n, e in enumerate(_events(log)):
        one.on_event(e)
        ad, table = (ad_a, ta) if int(e.user_id[1:]) % 2 else (ad_b, tb)
        outs = ad.on_user_record(e.user_id.encode(), e.to_json(), _meta(n), table)
        shipped += [o.value for o in _by_stage(outs, ITEM_DELTAS)]
    # every worker replicates the whole delta topic, its own records included
    ad_a.on_replicated(ITEM_DELTAS, shipped)
    ad_b.on_replicated(ITEM_DELTAS, shipped)
    assert ad_a.counts["deltas_skipped"] + ad_b.counts["deltas_skipped"] == len(shipped)

    def cooc_by_id(eng: Engine, vid: str) -> dict[str, float]:
        ids = eng.catalog.ids
        return {ids[j]: round(s, 9) for j, s in eng.cooc.neighbours(eng.catalog.get(vid)).items()}

    def pop_by_id(eng: Engine) -> dict[str, float]:
        items = np.arange(len(eng.catalog))
        return dict(
            zip(eng.catalog.ids, np.round(eng.popularity.normalised(items), 6), strict=True)
        )

    for vid in ("v0", "v3", "v7", "v31"):
        assert cooc_by_id(a, vid) == pytest.approx(cooc_by_id(one, vid))
        assert cooc_by_id(b, vid) == pytest.approx(cooc_by_id(one, vid))
    assert pop_by_id(a) == pytest.approx(pop_by_id(one))
    assert pop_by_id(b) == pytest.approx(pop_by_id(one))


def test_redelivered_deltas_are_applied_once(make_engine):
    log = planted_log()
    src, dst = make_engine(), make_engine()
    src.on_videos(_videos(log))
    dst.on_videos(_videos(log))
    outs = _feed(EngineAdapter(src, origin="src"), _events(log)[:36], {})
    shipped = [o.value for o in _by_stage(outs, ITEM_DELTAS)]
    ad = EngineAdapter(dst, origin="dst")
    assert ad.on_replicated(ITEM_DELTAS, shipped) == len(shipped)
    before = dst.popularity.normalised(np.arange(len(dst.catalog))).copy()
    assert ad.on_replicated(ITEM_DELTAS, shipped) == 0
    np.testing.assert_array_equal(dst.popularity.normalised(np.arange(len(dst.catalog))), before)


def test_embedded_videos_reach_other_workers_with_their_vectors(make_engine):
    log = planted_log()
    a, b = make_engine(), make_engine()
    ad_a, ad_b = EngineAdapter(a, origin="a"), EngineAdapter(b, origin="b")
    vids = _videos(log)[:8]
    records = [
        (v.video_id.encode(), v.to_json(), Meta("t.videos", 0, i)) for i, v in enumerate(vids)
    ]
    records.insert(3, (b"bad", b'{"kind":"video","video_id":"bad"}', Meta("t.videos", 0, 99)))
    videos, bad = ad_a.decode_videos(records)
    assert [v.video_id for v in videos] == [v.video_id for v in vids]
    assert len(bad) == 1 and "published_at" in DeadLetter.from_json(bad[0].value).reason
    vectors = ad_a.encode_videos(videos)
    outs = ad_a.video_vector_outs(videos, vectors)
    assert [o.key for o in outs] == [v.video_id.encode() for v in vids]
    assert ad_b.on_replicated(VIDEO_VECTORS, [o.value for o in outs]) == len(vids)
    for v, vec in zip(vids, vectors, strict=True):
        i = b.catalog.get(v.video_id)
        np.testing.assert_array_equal(b.catalog.vectors[i], vec)
    assert b.index.count() == len(vids)
    assert b.index.search(vectors[0], 1)[0][0] == vids[0].video_id


def test_vectors_of_another_width_are_not_mixed_in(make_engine):
    log = planted_log()
    eng = make_engine()
    other = EngineAdapter(Engine(EngineSettings(), HashingEncoder(dim=16), None))
    v = _videos(log)[0]
    out = other.video_vector_outs([v], other.encode_videos([v]))
    assert EngineAdapter(eng).on_replicated(VIDEO_VECTORS, [out[0].value, None]) == 0
    assert eng.catalog.get(v.video_id) is None


# -- faust agents ------------------------------------------------------------------------------
@pytest.fixture
def worker_app(make_engine):
    from streams.worker.app import WorkerSettings, make_app

    eng = make_engine()
    wa = make_app(
        WorkerSettings(status_interval_s=0, video_batch=2, video_within_s=5.0),
        topics=Topics(TopicSettings(prefix="agent-test")),
        engine=eng,
        replicate=False,
    )
    yield wa, eng, record_sends(wa)
    wa.close()


def record_sends(wa) -> dict[str, AsyncMock]:  # noqa: ANN001 - a streams.worker.app.WorkerApp
    """The agents send straight to the app's producer; record those sends by stage, as
    ``channel.send``-style calls (tests/test_streaming.py runs the agents on the broker)."""
    sent = {stage: AsyncMock() for stage in wa.channels}
    stage_of = {ch.get_topic_name(): stage for stage, ch in wa.channels.items()}

    async def send(topic, key, value, partition, timestamp, headers):  # noqa: ANN001, ANN202
        await sent[stage_of[topic]](key=key, value=value, headers=headers)

    wa.app.producer.send = send
    return sent


def _sent(mock: AsyncMock) -> list[dict]:
    return [c.kwargs for c in mock.await_args_list]


def test_learn_agent_decodes_calls_the_engine_and_sends(worker_app):
    wa, eng, sent = worker_app
    log = planted_log()
    eng.on_videos(_videos(log))
    events = _events(log)[:3]

    async def run() -> None:
        async with wa.agents["learn-and-recommend"].test_context() as agent:
            for e in events[:2]:
                await agent.put(key=e.user_id.encode(), value=e.to_json())
            await agent.put(key=b"u2", value=b"\xff\xfe not json")
            await agent.put(key=events[2].user_id.encode(), value=events[2].to_json())

    asyncio.run(run())
    recs = _sent(sent[RECOMMENDATIONS])
    assert [r["key"] for r in recs] == [e.user_id.encode() for e in events]
    assert [decode(r["value"]).trigger_event_id for r in recs] == [e.event_id for e in events]
    assert all(TRIGGER_TS_HEADER in r["headers"] for r in recs)
    dead = _sent(sent[DEAD_LETTERS])
    assert len(dead) == 1
    dl = DeadLetter.from_json(dead[0]["value"])
    assert dl.value == b"\xff\xfe not json" and "not valid JSON" in dl.reason
    assert len(_sent(sent[ITEM_DELTAS])) == 3
    assert set(wa.table.keys()) == {e.user_id.encode() for e in events}


def test_embed_agent_batches_videos_into_the_encoder_and_ships_vectors(worker_app):
    wa, eng, sent = worker_app
    calls: list[int] = []
    encode = wa.adapter.encode_videos

    def counting(videos):  # noqa: ANN001, ANN202 - spy on the executor call
        calls.append(len(videos))
        return encode(videos)

    wa.adapter.encode_videos = counting
    vids = _videos(planted_log())[:4]

    async def run() -> None:
        async with wa.agents["embed"].test_context() as agent:
            for v in vids:
                await agent.put(key=v.video_id.encode(), value=v.to_json())
            # put() returns once a record is buffered; the batch is processed when it is full
            for _ in range(500):
                if sent[VIDEO_VECTORS].await_count == len(vids):
                    break
                await asyncio.sleep(0.01)

    asyncio.run(run())
    shipped = _sent(sent[VIDEO_VECTORS])
    assert [s["key"] for s in shipped] == [v.video_id.encode() for v in vids]
    assert sum(calls) == 4 and max(calls) == 2  # micro-batches of video_batch=2
    # the vectors are the encoder's, and the embedding worker's own catalogue is fed by
    # replication like everyone else's
    other = EngineAdapter(eng)
    assert other.on_replicated(VIDEO_VECTORS, [s["value"] for s in shipped]) == 4
    np.testing.assert_allclose(
        eng.catalog.vectors[eng.catalog.get(vids[0].video_id)],
        eng.encoder.encode_many([vids[0].text()])[0],
    )


def test_the_worker_leaves_aiokafka_debug_logging_off(worker_app):
    """faust's spinner would set the root logger to DEBUG: a log record per produced record."""
    import logging

    from streams.worker.app import faust_worker

    wa, _, _ = worker_app
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        faust_worker(wa)._setup_logging()
        assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
        assert logging.getLogger("aiokafka").isEnabledFor(logging.WARNING)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
