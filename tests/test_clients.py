"""Producer and subscriber clients: routing, validation, pacing, latency headers, and the CLI."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from test_engine import T0, planted_log, video

from schemas import ForgetUser, Recommendations, RecommendedItem, UserEvent, decode
from schemas.wire import TRIGGER_TS_HEADER, DeadLetter
from streams import cli
from streams.cli.subscribe import format_recommendations
from streams.wire.clients import (
    Pacer,
    Received,
    Record,
    Sender,
    ingest,
    latency_summary,
    replay,
    route,
    trigger_latency_ms,
)
from streams.wire.eventlog import BadLine, read_lines
from streams.wire.topics import Topics, TopicSettings, delete_topics

TOPICS = Topics(TopicSettings(prefix="unit"))


class FakeProducer:
    """Records what would have been sent; ``fail`` makes every delivery fail."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = 0
        self.fail = fail

    def send(self, topic: str, key: bytes, value: bytes) -> Any:
        self.sent.append((topic, key, value))
        return _Future(RuntimeError("broker unreachable") if self.fail else None)

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1


class _Future:
    def __init__(self, exc: Exception | None) -> None:
        self.exc = exc

    def add_errback(self, fn: Any) -> None:
        if self.exc is not None:
            fn(self.exc)


def _event(n: int, user: str = "u1", minutes: float = 0.0) -> UserEvent:
    return UserEvent(
        event_id=f"e{n}",
        user_id=user,
        video_id=f"v{n}",
        type="play",
        ts=T0 + timedelta(minutes=minutes),
    )


def test_messages_go_to_their_topic_with_their_key():
    assert route(video(3, 0, T0), TOPICS) == ("unit.videos", b"v3")
    assert route(_event(1, "alice"), TOPICS) == ("unit.user-events", b"alice")
    assert route(ForgetUser(user_id="alice", ts=T0), TOPICS) == ("unit.user-events", b"alice")
    recs = Recommendations(user_id="alice", items=[], generated_at=T0)
    with pytest.raises(ValueError, match="output"):
        route(recs, TOPICS)


def test_ingest_sends_good_lines_and_reports_each_bad_one_by_line_number():
    lines = [
        video(1, 0, T0).to_json().decode(),
        "{oops",
        _event(1).to_json().decode(),
        "",
        '{"kind":"event","event_id":"e2","user_id":"u1","video_id":"v1","type":"play"}',
        Recommendations(user_id="u1", items=[], generated_at=T0).to_json().decode(),
        ForgetUser(user_id="u1", ts=T0).to_json().decode(),
    ]
    producer = FakeProducer()
    bad: list[BadLine] = []
    stats = ingest(read_lines(lines), Sender(producer, TOPICS), on_bad=bad.append)
    assert [(t, k) for t, k, _ in producer.sent] == [
        ("unit.videos", b"v1"),
        ("unit.user-events", b"u1"),
        ("unit.user-events", b"u1"),
    ]
    assert decode(producer.sent[1][2]) == _event(1)
    assert [b.lineno for b in bad[:2]] == [2, 5]
    assert "ts" in bad[1].reason
    assert "output" in bad[2].reason
    assert stats.bad_lines == 3 and stats.total == 3 and producer.flushed == 1
    assert "1 videos" in stats.summary() and "3 bad lines" in stats.summary()


def test_failed_deliveries_are_counted_not_lost():
    stats = ingest(read_lines([_event(1).to_json().decode()]), Sender(FakeProducer(True), TOPICS))
    assert stats.failed == 1 and "broker unreachable" in stats.errors[0]
    assert "NOT delivered" in stats.summary()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(round(s, 6))
        self.now += s


def test_pacer_keeps_stream_spacing_divided_by_speed_after_the_backfill():
    clock = FakeClock()
    pacer = Pacer(60.0, max_gap_s=5.0, clock=clock, sleep=clock.sleep)
    backfill = [video(i, 0, T0 - timedelta(days=30 - i)) for i in range(3)]
    for v in backfill:
        assert pacer.wait(v) == 0.0  # the catalogue before the stream goes at once
    assert pacer.wait(_event(1, minutes=0)) == 0.0  # the clock starts here
    assert pacer.wait(_event(2, minutes=1)) == pytest.approx(1.0)  # 60 s / 60
    assert pacer.wait(_event(3, minutes=1)) == 0.0  # same instant
    assert pacer.wait(video(9, 0, T0 + timedelta(minutes=3))) == pytest.approx(2.0)
    assert pacer.wait(_event(4, minutes=60)) == pytest.approx(5.0)  # 57 s capped at 5
    assert pacer.wait(_event(5, minutes=61)) == pytest.approx(1.0)  # spacing kept after a cap
    assert clock.slept == pytest.approx([1.0, 2.0, 5.0, 1.0])


def test_pacer_does_not_wait_when_behind_or_unpaced():
    clock = FakeClock()
    pacer = Pacer(60.0, clock=clock, sleep=clock.sleep)
    pacer.wait(_event(1, minutes=0))
    clock.now += 10.0  # sending took longer than the stream gap
    assert pacer.wait(_event(2, minutes=1)) == 0.0
    fast = Pacer(None, clock=clock, sleep=clock.sleep)
    assert all(fast.wait(_event(n, minutes=n * 100)) == 0.0 for n in range(5))
    with pytest.raises(ValueError):
        Pacer(0.0)


def test_replay_sends_in_log_order_skips_outputs_and_flushes_when_stopped():
    log = planted_log(n_videos=6, n_users=2, per_user=3)
    recs = Recommendations(user_id="u0", items=[], generated_at=T0)
    producer = FakeProducer()
    stop = threading.Event()
    seen: list[int] = []

    def progress(n: int) -> None:
        seen.append(n)

    stats = replay(
        [*log[:5], recs, *log[5:]], Sender(producer, TOPICS), Pacer(None), on_progress=progress
    )
    assert [decode(v) for _, _, v in producer.sent] == log
    assert stats.total == len(log) and producer.flushed == 1 and seen[-1] == len(log) + 1

    stop.set()
    producer = FakeProducer()
    replay(log, Sender(producer, TOPICS), Pacer(None), stop=stop)
    assert producer.sent == [] and producer.flushed == 1


def _record(headers: dict[str, bytes], received_ms: float = 1_000_250.0) -> Record:
    return Record("unit.recommendations", 0, 7, b"u1", b"{}", 1_000_000, headers, received_ms)


def test_end_to_end_latency_comes_from_the_trigger_header():
    assert trigger_latency_ms(_record({TRIGGER_TS_HEADER: b"1000000"})) == 250.0
    assert trigger_latency_ms(_record({})) is None
    assert trigger_latency_ms(_record({TRIGGER_TS_HEADER: b"soon"})) is None
    s = latency_summary([10.0] * 98 + [100.0, 1000.0])
    assert s["n"] == 100 and s["p50_ms"] == 10.0 and s["max_ms"] == 1000.0
    assert latency_summary([]) == {"n": 0}


def test_pretty_output_names_the_user_trigger_and_items():
    recs = Recommendations(
        user_id="alice",
        items=[RecommendedItem(video_id=f"v{i}", score=1.0 - i / 10) for i in range(8)],
        trigger_event_id="e42",
        generated_at=T0,
        latency_ms=3.5,
    )
    text = format_recommendations(Received(recs, 41.7, _record({})), top=3)
    assert "alice" in text and "e42" in text and "e2e 42 ms" in text
    assert "v2" in text and "v3" not in text


def test_dead_letter_round_trip_keeps_the_original_bytes():
    dl = DeadLetter("p.user-events", 2, 17, "not valid JSON", b"\x00\xffraw", b"k")
    back = DeadLetter.from_json(dl.to_json())
    assert (back.topic, back.partition, back.offset, back.value, back.key) == (
        "p.user-events",
        2,
        17,
        b"\x00\xffraw",
        b"k",
    )
    assert back.time and back.reason == "not valid JSON"
    with pytest.raises(ValueError):
        DeadLetter.from_json(b'{"kind":"event"}')


# -- on the real broker ---------------------------------------------------------------------------
@pytest.fixture
def prefix(kafka_settings, monkeypatch):
    """A topic prefix of this test alone, removed afterwards."""
    p = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("VIDREC_TOPIC_PREFIX", p)
    yield p
    delete_topics(kafka_settings, [spec.name for spec in Topics(TopicSettings(prefix=p))])


def _read_all(kafka_settings, topic: str, n: int) -> list[Record]:
    from streams.wire.clients import consume

    out: list[Record] = []
    for rec in consume(kafka_settings, topic, from_beginning=True, timeout_s=10.0):
        out.append(rec)
        if len(out) >= n:
            break
    return out


@pytest.mark.kafka
def test_vidrec_ingest_delivers_good_lines_keyed_and_rejects_bad_ones(
    kafka_settings, prefix, tmp_path, capsys
):
    log = planted_log(n_videos=6, n_users=3, per_user=2)
    path = tmp_path / "in.jsonl"
    lines = [m.to_json().decode() for m in log]
    lines.insert(4, '{"kind":"event","user_id":"u1"}')
    path.write_text("\n".join(lines) + "\n")
    assert cli.main(["ingest", str(path)]) == 1  # one bad line
    err = capsys.readouterr().err
    assert "line 5: skipped" in err and "event_id" in err and "sent 6 events, 6 videos" in err

    topics = Topics(TopicSettings(prefix=prefix))
    events = _read_all(kafka_settings, topics.user_events, 6)
    assert sorted(decode(r.value).event_id for r in events) == sorted(
        m.event_id for m in log if isinstance(m, UserEvent)
    )
    assert all(r.key == decode(r.value).user_id.encode() for r in events)
    parts: dict[bytes, set[int]] = {}
    for r in events:
        parts.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in parts.values())  # one partition per user: one owner
    videos = _read_all(kafka_settings, topics.videos, 6)
    assert {r.key for r in videos} == {f"v{i}".encode() for i in range(6)}


@pytest.mark.kafka
def test_vidrec_forget_and_replay_reach_the_user_events_topic(kafka_settings, prefix, tmp_path):
    log = planted_log(n_videos=3, n_users=2, per_user=2)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(m.to_json().decode() + "\n" for m in log))
    assert cli.main(["replay", str(path), "--max", "--quiet"]) == 0
    assert cli.main(["forget", "u1"]) == 0
    topics = Topics(TopicSettings(prefix=prefix))
    recs = _read_all(kafka_settings, topics.user_events, 5)
    kinds = [decode(r.value).kind for r in recs if r.key == b"u1"]
    assert kinds == ["event", "event", "forget"]  # the forget is ordered after the events


@pytest.mark.kafka
def test_vidrec_forget_wait_without_a_worker_says_no_receipt_came(kafka_settings, prefix, capsys):
    assert cli.main(["forget", "u1", "--wait", "2"]) == 3
    err = capsys.readouterr().err
    assert "no receipt" in err and f"{prefix}.erasures" in err
