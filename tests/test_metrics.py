"""A worker's metrics (``streams.worker.metrics``): what they count on the engine's own path, and
on the real broker, the worker's ``/metrics`` (faust's sensor and vidrec's) and its
``WorkerStats`` records on the stats topic."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request

import pytest
from faust.types import TP
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_engine import planted_log

from schemas import UserEvent, VideoPublished
from schemas.wire import USER_EVENTS, VIDEOS, WorkerStats
from streams.wire.clients import Sender, consume, make_producer, subscribe
from streams.wire.topics import Topics, TopicSettings, create_topics
from streams.worker.metrics import WorkerMetrics
from streams.worker.process import WorkerProcess, wait_until_serving
from workers.adapter import EngineAdapter, Meta

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text page, parsed by prometheus-client's own parser."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def one(got: Samples, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def user_records(msgs: list, topic: str = "t.user-events", ts_ms: float | None = None) -> list:
    stamp = time.time() * 1000.0 - 50.0 if ts_ms is None else ts_ms
    return [
        (m.user_id.encode(), m.to_json(), Meta(topic, i % 2, i // 2, stamp))
        for i, m in enumerate(msgs)
    ]


def test_a_batch_moves_the_counters_the_latency_histogram_and_the_stats_record(make_engine):
    log = planted_log(n_videos=30, n_users=6, per_user=4)
    engine = make_engine()
    engine.on_videos([m for m in log if isinstance(m, VideoPublished)])
    adapter = EngineAdapter(engine)
    m = WorkerMetrics(adapter, [USER_EVENTS], worker="w1")
    events = [e for e in log if isinstance(e, UserEvent)]
    before = samples(generate_latest(m.registry).decode())
    assert one(before, "vidrec_events_total") == 0
    assert one(before, "vidrec_dead_letters_total", stage=USER_EVENTS) == 0
    assert one(before, "vidrec_live_quality_window") == 0

    records = user_records(events)
    records.append((b"u0", b"{not json", Meta("t.user-events", 0, 999, None)))
    table: dict[bytes, bytes] = {}
    outs = adapter.on_user_records(records, table)
    m.after_user_batch(records, outs, USER_EVENTS)

    got = samples(generate_latest(m.registry).decode())
    assert one(got, "vidrec_events_total") == len(events)
    assert one(got, "vidrec_lists_published_total") == len(events)
    assert one(got, "vidrec_dead_letters_total", stage=USER_EVENTS) == 1
    assert one(got, "vidrec_event_to_list_seconds_count") == len(events)
    # each list is at least the 50 ms old its trigger's timestamp says
    assert one(got, "vidrec_event_to_list_seconds_sum") >= 0.05 * len(events)
    assert one(got, "vidrec_event_to_list_seconds_bucket", le="0.025") == 0
    hr, ndcg, window = engine.live.get()
    assert window > 0 and one(got, "vidrec_live_quality_window") == window
    assert one(got, "vidrec_live_hr_at_10") == pytest.approx(hr)
    assert one(got, "vidrec_live_ndcg_at_10") == pytest.approx(ndcg)
    assert m.processed == {("t.user-events", 0): 999, ("t.user-events", 1): (len(events) - 1) // 2}

    stats = WorkerStats.from_json(m.stats().to_json())
    assert (stats.worker_id, stats.events, stats.lists, stats.dead_letters) == (
        "w1",
        len(events),
        len(events),
        1,
    )
    assert stats.latency_p50_ms is not None and 50.0 <= stats.latency_p50_ms <= stats.latency_p99_ms
    assert (stats.hr10, stats.quality_window) == (pytest.approx(hr), window)
    # the latency quantiles cover the recent window only
    later = m.stats(now=time.time() + m.latency_window_s + 1)
    assert later.latency_p50_ms is None and later.events == len(events)


class Consumer:
    """The three calls of a faust consumer that the lag reads (the real one: the kafka test)."""

    def __init__(self, high: dict[TP, int | None], position: dict[TP, int]) -> None:
        self.high, self.pos = high, position

    def assignment(self) -> set[TP]:
        return set(self.high)

    def highwater(self, tp: TP) -> int | None:
        return self.high[tp]

    async def position(self, tp: TP) -> int:
        return self.pos[tp]


def test_lag_is_the_highwater_minus_the_next_offset_to_handle(make_engine):
    m = WorkerMetrics(EngineAdapter(make_engine()), [USER_EVENTS, VIDEOS])
    ev0, ev1, ev2, vid = (TP("p.user-events", 0), TP("p.user-events", 1),
                          TP("p.user-events", 2), TP("p.videos", 0))  # fmt: skip
    m.processed[("p.user-events", 0)] = 41  # handled up to offset 41
    c = Consumer({ev0: 50, ev1: 7, ev2: None, vid: 3}, {ev1: 2, vid: 0})
    asyncio.run(m.refresh_lag(c, ["p.user-events"]))
    # 0: 50 - 42; 1: nothing handled yet, the consumer's position; 2: never fetched
    assert m.lag == {("p.user-events", 0): 8, ("p.user-events", 1): 5}
    got = samples(generate_latest(m.registry).decode())
    assert one(got, "vidrec_consumer_lag", topic="p.user-events", partition="0") == 8
    assert one(got, "vidrec_dead_letters_total", stage=VIDEOS) == 0
    assert m.stats().lag == {"p.user-events:0": 8, "p.user-events:1": 5}


# -- on the real broker ---------------------------------------------------------------------------
PARTITIONS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return samples(r.read().decode())


@pytest.mark.kafka
def test_a_worker_serves_metrics_and_publishes_its_stats(kafka_settings, prefix):
    topics = Topics(TopicSettings(prefix=prefix, partitions=PARTITIONS, internal_partitions=2))
    create_topics(kafka_settings, topics)
    port = free_port()
    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": "2",
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIDREC_ENCODER_MODEL_PATH": "hashing",
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
        "VIDREC_WORKER_WEB_PORT": str(port),
        "VIDREC_WORKER_STATS_INTERVAL_S": "0.5",
        "VIDREC_QDRANT_PATH": None,
        "QDRANT_URL": None,
    }
    worker = WorkerProcess(f"{prefix}-w", env=env)
    try:
        wait_until_serving([worker], PARTITIONS)
        before = scrape(port)
        # faust's own sensor is on the same page as vidrec's metrics
        assert one(before, "faust_assignment_operations_total", operation="completed") >= 1
        assert one(before, "vidrec_events_total") == 0
        time.sleep(1.0)  # a stats record of the idle worker

        log = planted_log(n_videos=30, n_users=6, per_user=4)
        events = [m for m in log if isinstance(m, UserEvent)]
        producer = make_producer(kafka_settings)
        sender = Sender(producer, topics)
        for m in log:
            sender.send(m)
        producer.send(topics.user_events, key=b"u0", value=b"{not json")
        sender.flush()
        got = []
        for r in subscribe(kafka_settings, topics, from_beginning=True, timeout_s=30.0):
            got.append(r)
            if len(got) >= len(events):
                break
        assert len(got) == len(events)

        deadline = time.monotonic() + 15
        while True:  # the last batch's figures land once its outputs are sent
            after = scrape(port)
            if one(after, "vidrec_dead_letters_total", stage=USER_EVENTS) == 1 and one(
                after, "vidrec_event_to_list_seconds_count"
            ) == len(events):
                break
            assert time.monotonic() < deadline, "the metrics did not move"
            time.sleep(0.3)
        assert one(after, "vidrec_events_total") == len(events)
        assert one(after, "vidrec_lists_published_total") == len(events)
        assert one(after, "vidrec_videos_embedded_total") == 30
        assert one(after, "vidrec_event_to_list_seconds_sum") > 0
        assert one(after, "faust_messages_received_total") >= len(events) + 31
        assert one(after, "faust_messages_received_total") > one(
            before, "faust_messages_received_total"
        )
        assert 0 < one(after, "vidrec_live_quality_window") <= len(events)
        assert 0.0 <= one(after, "vidrec_live_hr_at_10") <= 1.0
        lags = {k: v for k, v in after.items() if k[0] == "vidrec_consumer_lag"}
        parts = {dict(labels)["partition"] for _, labels in lags}
        assert parts <= {"0", "1"} and all(v >= 0 for v in lags.values())

        # the worker keeps publishing: read until a record shows the last batch
        records, stats = [], []
        for r in consume(kafka_settings, topics.stats, from_beginning=True, timeout_s=5):
            records.append(r)
            stats.append(WorkerStats.from_json(r.value))
            if stats[-1].dead_letters == 1 and stats[-1].lists == len(events):
                break
        assert len(stats) >= 2 and stats[0].events < stats[-1].events
        assert {r.key for r in records} == {stats[0].worker_id.encode()}
        assert [s.at for s in stats] == sorted(s.at for s in stats)
        assert [s.events for s in stats] == sorted(s.events for s in stats)
        last = stats[-1]
        assert (last.events, last.lists, last.dead_letters, last.videos_embedded) == (
            len(events),
            len(events),
            1,
            30,
        )
        assert last.quality_window == one(after, "vidrec_live_quality_window")
        assert set(last.lag) <= {f"{topics.user_events}:0", f"{topics.user_events}:1",
                                 f"{topics.videos}:0", f"{topics.videos}:1"}  # fmt: skip
        assert worker.alive()
    finally:
        worker.stop()
