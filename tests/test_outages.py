"""Backpressure and outages: a failing or slow vector index, a failing encoder.

The component that writes to a failing dependency retries with capped exponential backoff and
takes no further records meanwhile, so no video is dropped; a failing content search degrades
the list (ranked without content candidates) instead of failing the event. The adapter-level
tests use ``FlakyIndex`` (``tests/flaky.py``) around a real in-memory index; the real-broker
test runs a worker process on one and switches its outage on and off.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from flaky import WORKER_COMMAND, FlakyIndex
from test_engine import planted_log

from schemas import Recommendations, UserEvent, VideoPublished, decode
from schemas.wire import DEAD_LETTERS, ITEM_DELTAS, RECOMMENDATIONS, VIDEO_VECTORS, DeadLetter
from streams.wire.clients import Sender, make_producer, subscribe
from streams.wire.topics import Topics, TopicSettings, create_topics, delete_prefix
from streams.worker.agents import Backoff
from streams.worker.process import WorkerProcess, wait_until_serving
from workers.adapter import EngineAdapter, Meta
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.index import VideoIndex, VideoIndexError
from workers.settings import EngineSettings, IndexSettings


@pytest.fixture
def flaky_engine():
    made = []

    def make(**kwargs) -> tuple[Engine, FlakyIndex]:
        enc = HashingEncoder()
        real = VideoIndex(IndexSettings(path=None), dim=enc.dim)
        idx = FlakyIndex(real, **kwargs)
        made.append(real)
        # every event searches the index (no reused candidates, no in-memory search of a small
        # catalogue), so that an outage is met at once
        settings = EngineSettings(k=10, candidate_refresh_events=1, memory_search_max=0)
        return Engine(settings, enc, idx), idx

    yield make
    for real in made:
        real.close()


def _videos(log: list) -> list[VideoPublished]:
    return [m for m in log if isinstance(m, VideoPublished)]


def _events(log: list) -> list[UserEvent]:
    return [m for m in log if isinstance(m, UserEvent)]


def _vector_records(videos: list[VideoPublished]) -> list[bytes]:
    src = EngineAdapter(Engine(EngineSettings(), HashingEncoder(), None), origin="src")
    return [o.value for o in src.video_vector_outs(videos, src.encode_videos(videos))]


# -- backoff ----------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap_counts_and_returns_the_result():
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls <= 6:
            raise VideoIndexError("down")
        return "stored"

    counts: dict[str, int] = {}
    b = Backoff(counts, initial_s=0.1, max_s=1.0, sleep=sleep)
    assert asyncio.run(b.run(call, "upsert", "index_retries", (VideoIndexError,))) == "stored"
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert counts == {"index_retries": 6}


def test_backoff_lets_other_errors_through():
    async def call() -> None:
        raise KeyError("a bug, not an outage")

    b = Backoff({}, sleep=lambda s: asyncio.sleep(0))
    with pytest.raises(KeyError):
        asyncio.run(b.run(call, "upsert", "index_retries", (VideoIndexError,)))


# -- replicated videos on a failing index -----------------------------------------------------
def test_a_failed_batch_of_videos_changes_nothing_and_its_retry_indexes_every_video(
    flaky_engine,
):
    eng, idx = flaky_engine(fail_calls=3)
    ad = EngineAdapter(eng, origin="w")
    videos = _videos(planted_log())[:20]
    values = _vector_records(videos)
    with pytest.raises(VideoIndexError):
        ad.on_replicated(VIDEO_VECTORS, values)
    # nothing half-applied: a retry of the same batch is the first application
    assert len(eng.catalog) == 0 and ad.counts["videos_replicated"] == 0

    async def apply() -> int:
        return ad.on_replicated(VIDEO_VECTORS, values)

    b = Backoff(ad.counts, initial_s=0.01, max_s=0.02)
    assert asyncio.run(b.run(apply, "indexing", "index_retries", (VideoIndexError,))) == 20
    assert ad.counts["index_retries"] == 2  # the 2nd and 3rd failing calls
    assert idx.failures == {"upsert": 3}
    assert idx.count() == 20 and ad.counts["videos_replicated"] == 20
    assert {v.video_id for v in videos} == set(eng.catalog.ids)


def test_a_failing_search_degrades_the_list_and_loses_no_event(flaky_engine):
    log = planted_log()
    eng, idx = flaky_engine()
    eng.on_videos(_videos(log))
    ad = EngineAdapter(eng, origin="w")
    table: dict[bytes, bytes] = {}
    events = _events(log)[:36]
    for n, e in enumerate(events[:24]):
        ad.on_user_record(e.user_id.encode(), e.to_json(), Meta("t", 0, n), table)
    assert eng.degraded_searches == 0
    idx.fail_calls = idx.calls + 1_000  # the index goes down
    lists = []
    for n, e in enumerate(events[24:], start=24):
        outs = ad.on_user_record(e.user_id.encode(), e.to_json(), Meta("t", 0, n), table)
        lists += [decode(o.value) for o in outs if o.stage == RECOMMENDATIONS]
        assert any(o.stage == ITEM_DELTAS for o in outs)  # learned all the same
    assert len(lists) == 12 and all(isinstance(r, Recommendations) for r in lists)
    assert all(len(r.items) == 10 for r in lists)
    assert eng.degraded_searches == idx.failures["search"] > 0
    assert ad.counts["published"] == 36 and ad.counts["events"] == 36


# -- a failing encoder in the embed agent -----------------------------------------------------
def test_embed_agent_retries_a_failing_encoder_and_ships_every_video(flaky_engine):
    from test_agents import record_sends

    from streams.worker.app import WorkerSettings, make_app

    eng, _ = flaky_engine()
    wa = make_app(
        WorkerSettings(
            status_interval_s=0, video_batch=4, video_within_s=0.05, retry_initial_s=0.01
        ),
        topics=Topics(TopicSettings(prefix="outage-test")),
        engine=eng,
        replicate=False,
    )
    sent = record_sends(wa)[VIDEO_VECTORS]
    failures = 0
    encode = wa.adapter.encode_videos

    def flaky_encode(videos):  # noqa: ANN001, ANN202 - the encoder fails twice, then recovers
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("CUDA error: out of memory")
        return encode(videos)

    wa.adapter.encode_videos = flaky_encode
    vids = _videos(planted_log())[:4]

    async def run() -> None:
        async with wa.agents["embed"].test_context() as agent:
            for v in vids:
                await agent.put(key=v.video_id.encode(), value=v.to_json())
            for _ in range(500):
                if sent.await_count == len(vids):
                    break
                await asyncio.sleep(0.01)

    try:
        asyncio.run(run())
    finally:
        wa.close()
    assert [c.kwargs["key"] for c in sent.await_args_list] == [v.video_id.encode() for v in vids]
    # failure 1: the batch; failure 2: the probe, so the encoder is down (not one bad video)
    # and the whole batch is retried once, then succeeds
    assert wa.adapter.counts["encode_retries"] == 1


def test_a_video_the_encoder_always_fails_on_is_dead_lettered_not_retried_forever(
    flaky_engine,
):
    eng, _ = flaky_engine()
    ad = EngineAdapter(eng, origin="w")
    vids = _videos(planted_log())[:5]
    poison = vids[2].model_copy(update={"title": "POISON"})
    vids[2] = poison
    encode = ad.encode_videos

    def picky(videos):  # noqa: ANN001, ANN202 - fails on one video, whatever the batch
        if any(v.title == "POISON" for v in videos):
            raise ValueError("tokenizer blew up")
        return encode(videos)

    ad.encode_videos = picky
    records = [
        (v.video_id.encode(), v.to_json(), Meta("t.videos", 0, n)) for n, v in enumerate(vids)
    ]
    good, vectors, bad = ad.encode_or_isolate(vids)
    assert [v.video_id for v in good] == [v.video_id for v in vids if v is not poison]
    assert vectors.shape == (4, eng.dim)
    assert [(v.video_id, "tokenizer blew up" in r) for v, r in bad] == [(poison.video_id, True)]
    letters = ad.poison_letters(records, bad)
    assert [o.stage for o in letters] == [DEAD_LETTERS]
    dl = DeadLetter.from_json(letters[0].value)
    assert dl.offset == 2 and dl.value == poison.to_json() and "encoder fails" in dl.reason

    # an encoder that is down fails the probe too: the batch error propagates (and is retried)
    def down(videos):  # noqa: ANN001, ANN202
        raise RuntimeError("CUDA error: out of memory")

    ad.encode_videos = down
    with pytest.raises(RuntimeError, match="out of memory"):
        ad.encode_or_isolate(vids)


# -- real broker: a worker whose index goes down twice ----------------------------------------
@pytest.mark.kafka
def test_worker_on_a_failing_index_indexes_every_video_and_serves_every_event(
    kafka_settings, tmp_path: Path
):
    from test_recovery import worker_counts

    prefix = f"t-{uuid.uuid4().hex[:10]}"
    topics = Topics(TopicSettings(prefix=prefix, partitions=2, internal_partitions=2))
    outage = tmp_path / "outage"
    outage.touch()
    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": "2",
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": "2",
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIDREC_ENCODER_MODEL_PATH": "hashing",
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0.5",
        "VIDREC_WORKER_RETRY_MAX_S": "1",
        "VIDREC_QDRANT_PATH": None,
        "QDRANT_URL": None,
        "VIDREC_TEST_OUTAGE_FILE": str(outage),
        "VIDREC_ENGINE_MEMORY_SEARCH_MAX": "0",  # content candidates from the failing index
    }
    log = planted_log(n_videos=60, n_users=12, per_user=12)
    videos, events = _videos(log), _events(log)
    half = len(events) // 2
    create_topics(kafka_settings, topics)
    w = WorkerProcess(f"{prefix}-flaky", env=env, command=WORKER_COMMAND)
    sender = Sender(make_producer(kafka_settings), topics)

    def counts() -> dict[str, int]:
        return worker_counts(w)

    def wait(cond, what: str, timeout_s: float = 120.0) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not cond():
            assert w.alive(), "\n".join(w.lines[-30:])
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {counts()}"
            time.sleep(0.2)

    try:
        wait_until_serving([w], 2)
        # outage 1: the index is down while the catalogue arrives
        for v in videos:
            sender.send(v)
        sender.flush()
        wait(lambda: counts().get("index_retries", 0) >= 3, "retries")
        during = counts()
        assert during["videos_replicated"] == 0 and during["indexed"] == 0  # held, not dropped
        outage.unlink()
        wait(lambda: counts().get("indexed", 0) == len(videos), "every video indexed")
        for e in events[:half]:
            sender.send(e)
        sender.flush()
        wait(lambda: counts().get("published", 0) >= half, "the first half of the lists")
        # outage 2: the index goes down while users are served
        outage.touch()
        for e in events[half:]:
            sender.send(e)
        sender.flush()
        wait(lambda: counts().get("published", 0) >= len(events), "every list")
        outage.unlink()
        final = counts()
        got = [
            r.recs for r in subscribe(kafka_settings, topics, from_beginning=True, timeout_s=5.0)
        ]
    finally:
        sender.close()
        w.stop()
        delete_prefix(kafka_settings, prefix)
    print(f"\nduring outage 1: {during}\nat the end: {final}")
    assert final["videos_replicated"] == final["indexed"] == len(videos)
    assert final["index_retries"] >= 3 and final["degraded_searches"] > 0
    assert {r.trigger_event_id for r in got} == {e.event_id for e in events}
    assert all(len(r.items) > 0 for r in got)
