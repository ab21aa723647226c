"""Streaming on the real broker: topics, worker round trip, dead letters, and 1 vs 2 workers.

Workers run as subprocesses (``python -m streams.cli worker``) with the model-free encoder, each
test on its own topic prefix. The comparisons print their figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_engine import planted_log

from schemas import UserEvent, VideoPublished
from schemas.wire import DeadLetter
from streams.wire.clients import (
    Pacer,
    Sender,
    consume,
    forget,
    latency_summary,
    make_producer,
    replay,
    subscribe,
)
from streams.wire.eventlog import write_log
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, admin_client, create_topics, delete_prefix
from streams.worker.process import WorkerProcess, wait_until_serving

pytestmark = pytest.mark.kafka

PARTITIONS = 6


def _topics(prefix: str) -> Topics:
    return Topics(
        TopicSettings(prefix=prefix, partitions=PARTITIONS, internal_partitions=PARTITIONS)
    )


@pytest.fixture
def start_workers(kafka_settings: KafkaSettings) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(prefix: str, n: int) -> list[WorkerProcess]:
        env: dict[str, str | None] = {
            "VIDREC_TOPIC_PREFIX": prefix,
            "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
            "VIDREC_TOPIC_INTERNAL_PARTITIONS": str(PARTITIONS),
            "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
            "VIDREC_ENCODER_MODEL_PATH": "hashing",
            "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
            "VIDREC_QDRANT_PATH": None,  # in-memory Qdrant: one per worker
            "QDRANT_URL": None,
        }
        workers = [WorkerProcess(f"{prefix}-w{i}", env=env) for i in range(n)]
        started.extend(workers)
        wait_until_serving(workers, PARTITIONS)
        return workers

    yield start
    for w in started:
        w.stop()


def _collect(kafka_settings, topics: Topics, n: int, idle_s: float = 60.0) -> list[Any]:
    out = []
    for r in subscribe(kafka_settings, topics, from_beginning=True, timeout_s=idle_s):
        out.append(r)
        if len(out) >= n:
            break
    return out


# -- topics -------------------------------------------------------------------------------------
def test_topic_creation_is_idempotent_and_follows_the_layout(kafka_settings, prefix):
    topics = _topics(prefix)
    first = create_topics(kafka_settings, topics)
    assert set(first.values()) == {"created"}
    again = create_topics(kafka_settings, topics)
    assert set(again.values()) == {"exists"}
    admin = admin_client(kafka_settings)
    try:
        described = {d["name"]: d for d in admin.describe_topics([s.name for s in topics])}
        from kafka.admin import ConfigResource, ConfigResourceType

        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in topics]
        )
    finally:
        admin.close()
    for spec in topics:
        assert len(described[spec.name]["partitions"]) == spec.partitions
    text = repr(configs)
    assert "compact" in text  # video-vectors and recommendations are compacted
    assert topics.specs["video-vectors"].cleanup_policy == "compact"
    assert topics.specs["item-deltas"].configs["retention.ms"] == "-1"


# -- one worker: round trip, dead letters, forget ---------------------------------------------
def test_ingest_worker_subscribe_round_trip_with_dead_letters(
    kafka_settings, prefix, start_workers
):
    topics = _topics(prefix)
    create_topics(kafka_settings, topics)
    start_workers(prefix, 1)
    log = planted_log(n_videos=30, n_users=6, per_user=4)
    events = [m for m in log if isinstance(m, UserEvent)]
    producer = make_producer(kafka_settings)
    sender = Sender(producer, topics)
    for m in log[:30]:
        sender.send(m)  # videos
    bad = [
        (topics.user_events, b"u0", b"{this is not json"),
        (topics.user_events, b"u1", b'{"kind":"event","event_id":"x","user_id":"u1"}'),
        (topics.videos, b"v99", b'{"kind":"video","video_id":"v99","title":"no date"}'),
    ]
    half = len(events) // 2
    for e in events[:half]:
        sender.send(e)
    for topic, key, value in bad:
        producer.send(topic, key=key, value=value)
    for e in events[half:]:
        sender.send(e)
    sender.flush()

    got = _collect(kafka_settings, topics, len(events))
    assert sorted(r.recs.trigger_event_id for r in got) == sorted(e.event_id for e in events)
    by_event = {e.event_id: e for e in events}
    for r in got:
        assert (
            r.record.key
            == r.recs.user_id.encode()
            == by_event[r.recs.trigger_event_id].user_id.encode()
        )
        assert len(r.recs.items) > 0 and r.e2e_ms is not None and r.e2e_ms >= 0
    # each user's lists come in the order of the user's events
    for u in {e.user_id for e in events}:
        mine = [r.recs.trigger_event_id for r in got if r.recs.user_id == u]
        assert mine == [e.event_id for e in events if e.user_id == u]
    # learning happened: late lists of a user no longer offer what the user watched
    last = {r.recs.user_id: r for r in got}
    for u, r in last.items():
        watched = {e.video_id for e in events if e.user_id == u}
        assert not watched & {it.video_id for it in r.recs.items}

    # vidrec forget: the worker answers with a receipt, and u0's last list is tombstoned
    _, receipt = forget(kafka_settings, topics, "u0", wait_s=60.0)
    assert receipt is not None and receipt.user_id == "u0"
    assert receipt.erased["events"] == sum(e.user_id == "u0" for e in events)
    assert receipt.erased["cooc_increments"] > 0
    last_u0 = [
        r.value
        for r in consume(kafka_settings, topics.recommendations, from_beginning=True, timeout_s=5)
        if r.key == b"u0"
    ]
    assert len(last_u0) > 1 and last_u0[-1] is None

    # after the forget, u0's earlier events are never learned again (a redelivery publishes
    # nothing), while a new event of u0 starts afresh
    first_u0 = next(e for e in events if e.user_id == "u0")
    sender.send(first_u0)
    fresh = UserEvent(
        event_id="after-forget",
        user_id="u0",
        video_id=first_u0.video_id,
        type="play",
        ts=receipt.requested_at + timedelta(minutes=5),
    )
    sender.send(fresh)
    sender.flush()
    again = [r.recs.trigger_event_id for r in _collect(kafka_settings, topics, len(events) + 1)]
    assert again.count(first_u0.event_id) == 1 and again.count("after-forget") == 1
    sender.close()

    dead = [
        DeadLetter.from_json(r.value)
        for r in consume(kafka_settings, topics.dead_letters, from_beginning=True, timeout_s=10.0)
    ]
    assert len(dead) == 3
    by_value = {d.value: d for d in dead}
    for topic, key, value in bad:
        d = by_value[value]
        assert d.topic == topic and d.key == key and d.offset >= 0 and d.reason
    assert "not valid JSON" in by_value[bad[0][2]].reason
    assert "ts" in by_value[bad[1][2]].reason
    assert "published_at" in by_value[bad[2][2]].reason


# -- quality: embedded vs 1 worker vs 2 workers ---------------------------------------------
def _small_sample() -> list[Any]:
    try:
        from streams.sample.generator import generate

        return list(generate(7, videos=400, users=100, days=5))
    except ImportError:  # the generator is optional for this test
        return planted_log(n_videos=90, n_users=30, per_user=20)


def _evaluate(log_path: Path, recs: list[Any], out: Path) -> dict[str, float]:
    from streams.cli.evaluate import evaluate_files

    write_log(out, recs)
    return evaluate_files(str(log_path), str(out))


def _embedded(log: list[Any]) -> list[Any]:
    from workers.encoder import HashingEncoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.inprocess import drive
    from workers.settings import EngineSettings, IndexSettings

    enc = HashingEncoder()
    published: list[Any] = []
    with VideoIndex(IndexSettings(path=None), dim=enc.dim) as index:
        drive(log, Engine(EngineSettings(), enc, index), on_recommendations=published.append)
    return published


def _stream(kafka_settings, prefix: str, log: list[Any], n_workers: int, start_workers, speed):
    topics = _topics(prefix)
    create_topics(kafka_settings, topics)
    workers = start_workers(prefix, n_workers)
    n_events = sum(isinstance(m, UserEvent) for m in log)
    received: list[Any] = []
    done = threading.Event()
    stats: dict[str, Any] = {}

    def produce() -> None:
        sender = Sender(make_producer(kafka_settings), topics)
        try:
            stats["replay"] = replay(log, sender, Pacer(speed))
        finally:
            sender.close()
            done.set()

    def start() -> None:
        threading.Thread(target=produce, daemon=True).start()

    for r in subscribe(kafka_settings, topics, on_ready=start, timeout_s=60.0):
        received.append(r)
        if len(received) >= n_events:
            break
    done.wait(60)
    for w in workers:
        w.stop()
    lat = latency_summary([r.e2e_ms for r in received if r.e2e_ms is not None])
    return [r.recs for r in received], lat, stats.get("replay")


def test_one_and_two_workers_match_the_embedded_run(kafka_settings, start_workers, tmp_path):
    log = _small_sample()
    log_path = tmp_path / "sample.jsonl"
    write_log(log_path, log)
    n_events = sum(isinstance(m, UserEvent) for m in log)
    speed = float(os.environ.get("VIDREC_TEST_REPLAY_SPEED", "10000"))

    results = {"embedded": _evaluate(log_path, _embedded(log), tmp_path / "embedded.jsonl")}
    latencies: dict[str, Any] = {}
    for n in (1, 2):
        p = f"t-{uuid.uuid4().hex[:10]}"
        try:
            recs, lat, replay_stats = _stream(kafka_settings, p, log, n, start_workers, speed)
        finally:
            delete_prefix(kafka_settings, p)
        assert len(recs) == n_events, f"{n} worker(s): {len(recs)} of {n_events} lists"
        results[f"{n} worker{'s' if n > 1 else ''}"] = _evaluate(
            log_path, recs, tmp_path / f"w{n}.jsonl"
        )
        latencies[f"{n} worker{'s' if n > 1 else ''}"] = (lat, replay_stats)

    print(f"\n{len(log)} messages ({n_events} events), replay at {speed:g}x")
    print(f"{'run':<12}{'scored':>8}{'HR@10':>9}{'NDCG@10':>9}{'new HR@10':>11}")
    for name, r in results.items():
        print(
            f"{name:<12}{r['events']:>8}{r['hr@10']:>9.4f}{r['ndcg@10']:>9.4f}"
            f"{r['new_hr@10']:>11.4f}"
        )
    for name, (lat, st) in latencies.items():
        print(f"{name}: e2e latency {lat}; replay {st.summary() if st else '?'}")

    base = results["embedded"]["hr@10"]
    one, two = results["1 worker"]["hr@10"], results["2 workers"]["hr@10"]
    assert base > 0.1
    assert abs(one - base) <= 0.05 * base, (one, base)
    assert abs(two - base) <= 0.05 * base, (two, base)
    assert abs(two - one) <= 0.05 * one, (two, one)


def test_a_restarted_worker_resumes_users_and_item_state(kafka_settings, prefix, start_workers):
    """User state comes back from the table's changelog, item state from the replicated topics."""
    topics = _topics(prefix)
    create_topics(kafka_settings, topics)
    log = planted_log(n_videos=30, n_users=6, per_user=6)
    videos = [m for m in log if isinstance(m, VideoPublished)]
    events = [m for m in log if isinstance(m, UserEvent)]
    half = len(events) // 2
    sender = Sender(make_producer(kafka_settings), topics)

    (first,) = start_workers(prefix, 1)
    for m in [*videos, *events[:half]]:
        sender.send(m)
    sender.flush()
    assert len(_collect(kafka_settings, topics, half)) == half
    first.stop()

    (second,) = start_workers(prefix, 1)
    caught_up = [line for line in second.lines if "replica caught up" in line]
    assert caught_up and f"{len(videos)} videos" in caught_up[0]
    assert int(caught_up[0].split(", ")[1].split()[0]) > 0  # the first worker's item deltas
    sender.send(events[half - 1])  # already processed before the restart: a duplicate
    for e in events[half:]:
        sender.send(e)
    sender.flush()
    sender.close()
    dup = events[half - 1].event_id
    # the duplicate's list may come twice: a restarted worker cannot know whether the outputs
    # of its predecessor's last events reached the broker, and sends them again, unchanged
    got = _collect(kafka_settings, topics, len(events) + 1, idle_s=20.0)
    triggers = [r.recs.trigger_event_id for r in got]
    assert 1 <= triggers.count(dup) <= 2
    lists = [[it.video_id for it in r.recs.items] for r in got if r.recs.trigger_event_id == dup]
    assert lists[-1] == lists[0]  # sent again as built, not learned again
    assert sorted(set(triggers)) == sorted(e.event_id for e in events)
    assert len(triggers) - len(set(triggers)) <= 1
    # the history from before the restart still shapes the lists after it: watched items stay out
    last = {r.recs.user_id: r for r in got}
    for u, r in last.items():
        watched = {e.video_id for e in events if e.user_id == u}
        assert not watched & {it.video_id for it in r.recs.items}
