"""kafka-python clients of the wire: the work behind ``vidrec ingest|replay|subscribe|forget``.

Producers validate every message before it leaves (a bad line is reported with its line number
and skipped, never sent), and route it by kind to its topic with its key: videos by
``video_id``, user events and forgets by ``user_id``. The subscriber measures end-to-end latency
from the trigger event's Kafka timestamp, which a worker copies into a header of each
``Recommendations`` record (``TRIGGER_TS_HEADER``), to the moment the record is received.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import (
    DecodeError,
    ErasureReceipt,
    ForgetUser,
    MessageBase,
    Recommendations,
    UserEvent,
    VideoPublished,
    decode,
    utcnow,
)
from schemas.wire import TRIGGER_TS_HEADER
from streams.wire.eventlog import BadLine
from streams.wire.privacy import Pseudonymiser
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, create_topics

# The shipped sample at ~25 events/s: what one worker on a small laptop keeps up with.
DEFAULT_SPEED = 900.0


def route(msg: MessageBase, topics: Topics) -> tuple[str, bytes]:
    """The topic and key a message is produced to.

    Raises
    ------
    ValueError
        For a ``Recommendations``: it is an output, only workers publish it.
    """
    if isinstance(msg, VideoPublished):
        return topics.videos, msg.video_id.encode()
    if isinstance(msg, UserEvent | ForgetUser):
        return topics.user_events, msg.user_id.encode()
    raise ValueError(f"a {msg.kind!r} record is an output of the workers, not an input")


def message_time(msg: MessageBase) -> float | None:
    """Stream time of a message in epoch seconds (what replay paces by)."""
    if isinstance(msg, VideoPublished):
        return msg.published_at.timestamp()
    if isinstance(msg, UserEvent | ForgetUser):
        return msg.ts.timestamp()
    return None


def make_producer(kafka: KafkaSettings, **overrides: Any) -> Any:
    """A kafka-python producer with at-least-once settings (acks from all in-sync replicas).

    Retries are bounded by time (``delivery_timeout_ms``), not by count: a topic created a moment
    ago answers ``NotLeaderForPartition`` until its leaders are elected, which can take seconds
    on a busy broker. One request in flight keeps a user's events in order across retries.
    """
    from kafka import KafkaProducer

    config: dict[str, Any] = {
        **kafka.client_kwargs(),
        "acks": "all",
        "linger_ms": 2,
        "retry_backoff_ms": 200,
        "delivery_timeout_ms": 120_000,
        "max_in_flight_requests_per_connection": 1,
        "allow_auto_create_topics": False,
    }
    config.update(overrides)
    return KafkaProducer(**config)


@dataclass
class SendStats:
    """What a producer sent, by kind, and what it could not."""

    sent: Counter = field(default_factory=Counter)
    bad_lines: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}s" for k, n in sorted(self.sent.items())) or "nothing"
        rate = f" ({self.total / self.seconds:.0f} records/s)" if self.seconds > 0 else ""
        out = f"sent {kinds} in {self.seconds:.1f} s{rate}; {self.bad_lines} bad lines skipped"
        if self.failed:
            out += f"; {self.failed} records NOT delivered (first error: {self.errors[0]})"
        return out


class Sender:
    """Produces validated messages to their topics; delivery failures are counted, not lost.

    Parameters
    ----------
    producer
        A kafka-python ``KafkaProducer`` (or anything with ``send`` and ``flush`` like it).
    topics
        The deployment's topic names.
    pseudonymiser
        Replaces each ``user_id`` before routing, so the raw id reaches neither the record key
        nor its value; by default the one ``VIDREC_PSEUDONYMISE_KEY`` asks for (none if unset),
        so every producer of the deployment applies the same key.
    """

    def __init__(
        self, producer: Any, topics: Topics, pseudonymiser: Pseudonymiser | None = None
    ) -> None:
        self.producer = producer
        self.topics = topics
        self.pseudonymiser = pseudonymiser or Pseudonymiser.from_settings()
        self.stats = SendStats()
        self._lock = threading.Lock()

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.failed += 1
            if len(self.stats.errors) < 5:
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")

    def send(self, msg: MessageBase) -> None:
        if self.pseudonymiser is not None:
            msg = self.pseudonymiser.apply(msg)
        topic, key = route(msg, self.topics)
        future = self.producer.send(topic, key=key, value=msg.to_json())
        if hasattr(future, "add_errback"):
            future.add_errback(self._failed)
        self.stats.sent[msg.kind] += 1

    def flush(self, timeout_s: float | None = 60.0) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.close()


def _report(bad: BadLine, where: str = "") -> None:
    print(f"vidrec: {where}line {bad.lineno}: skipped: {bad.reason}", file=sys.stderr)


def ingest(
    messages: Iterable[MessageBase | BadLine],
    sender: Sender,
    on_bad: Callable[[BadLine], None] = _report,
) -> SendStats:
    """Send each decoded message to its topic; report and skip bad lines and outputs."""
    t0 = time.perf_counter()
    for item in messages:
        if isinstance(item, BadLine):
            sender.stats.bad_lines += 1
            on_bad(item)
            continue
        try:
            sender.send(item)
        except ValueError as exc:  # an output kind (recommendations) in an input file
            sender.stats.bad_lines += 1
            on_bad(BadLine(0, str(exc), ""))
    sender.flush()
    sender.stats.seconds = time.perf_counter() - t0
    return sender.stats


class Pacer:
    """Waits so that messages leave with their original spacing in stream time, divided by speed.

    The clock starts at the first user event: everything before it (typically the catalogue
    published before the stream begins) is sent at once. A gap longer than ``max_gap_s`` of wall
    time (a quiet night at a low speed) is shortened to ``max_gap_s``. ``speed=None`` never waits.
    """

    def __init__(
        self,
        speed: float | None,
        max_gap_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0 (or None for as fast as possible)")
        self.speed = speed
        self.max_gap_s = max_gap_s
        self.clock = clock
        self.sleep = sleep
        self._t0: float | None = None
        self._wall0 = 0.0

    def wait(self, msg: MessageBase) -> float:
        """Sleep until ``msg`` is due; returns the seconds slept."""
        if self.speed is None:
            return 0.0
        t = message_time(msg)
        if t is None:
            return 0.0
        if self._t0 is None:
            if not isinstance(msg, UserEvent | ForgetUser):
                return 0.0
            self._t0, self._wall0 = t, self.clock()
            return 0.0
        delay = self._wall0 + (t - self._t0) / self.speed - self.clock()
        if delay > self.max_gap_s:
            self._wall0 -= delay - self.max_gap_s
            delay = self.max_gap_s
        if delay <= 0:
            return 0.0
        self.sleep(delay)
        return delay


def replay(
    messages: Iterable[MessageBase | BadLine],
    sender: Sender,
    pacer: Pacer,
    *,
    on_bad: Callable[[BadLine], None] = _report,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> SendStats:
    """Produce a log with its original pacing (see ``Pacer``); flushes at the end, even on stop."""
    t0 = time.perf_counter()
    n = 0
    try:
        for n, item in enumerate(messages, start=1):
            if stop is not None and stop.is_set():
                break
            if isinstance(item, BadLine):
                sender.stats.bad_lines += 1
                on_bad(item)
                continue
            if isinstance(item, Recommendations):
                continue  # a log written by `vidrec run --out` mixed in: outputs are not replayed
            pacer.wait(item)
            sender.send(item)
            if on_progress is not None and n % 100 == 0:
                on_progress(n)
    finally:
        sender.flush()
        if on_progress is not None:
            on_progress(n)
        sender.stats.seconds = time.perf_counter() - t0
    return sender.stats


# -- consuming ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, with what the subscriber needs of its Kafka metadata."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: dict[str, bytes]
    received_ms: float


def consume(
    kafka: KafkaSettings,
    topic: str,
    *,
    from_beginning: bool = False,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[Record]:
    """Tail every partition of ``topic`` without a consumer group (nothing is committed).

    Parameters
    ----------
    from_beginning
        Start at the oldest record; otherwise only records produced after ``on_ready`` is called.
    timeout_s
        Stop after this many seconds without a record; ``None`` waits for ever (or ``stop``).
    on_ready
        Called once every partition's start offset is fixed, so a caller can start producing
        without racing the subscriber.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=100,
    )
    try:
        deadline = time.monotonic() + 30.0
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} does not exist (run 'vidrec topics create')")
            time.sleep(0.2)
            consumer.topics()
            parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # resolve the start offset now, not at the first poll
        if on_ready is not None:
            on_ready()
        last = time.monotonic()
        while stop is None or not stop.is_set():
            batch = consumer.poll(timeout_ms=200)
            now_ms = time.time() * 1000.0
            if not batch:
                if timeout_s is not None and time.monotonic() - last > timeout_s:
                    return
                continue
            last = time.monotonic()
            for tp_records in batch.values():
                for r in tp_records:
                    yield Record(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        r.timestamp,
                        {k: v for k, v in (r.headers or [])},
                        now_ms,
                    )
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Received:
    """A published list, and how long after its trigger event was produced it arrived."""

    recs: Recommendations
    e2e_ms: float | None
    record: Record


def trigger_latency_ms(record: Record) -> float | None:
    raw = record.headers.get(TRIGGER_TS_HEADER)
    if raw is None:
        return None
    try:
        return record.received_ms - float(raw)
    except ValueError:
        return None


def subscribe(
    kafka: KafkaSettings,
    topics: Topics,
    *,
    user: str | None = None,
    from_beginning: bool = False,
    timeout_s: float | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Iterator[Received]:
    """Tail the recommendations topic, decoded; ``user`` keeps one user's lists only."""
    want = user.encode() if user is not None else None
    for rec in consume(
        kafka,
        topics.recommendations,
        from_beginning=from_beginning,
        timeout_s=timeout_s,
        stop=stop,
        on_ready=on_ready,
    ):
        if want is not None and rec.key != want:
            continue
        if rec.value is None:
            continue  # a forgotten user's list, deleted by a compaction tombstone
        try:
            msg = decode(rec.value, expect=Recommendations)
        except DecodeError as exc:
            print(f"vidrec subscribe: offset {rec.offset}: {exc.reason}", file=sys.stderr)
            continue
        assert isinstance(msg, Recommendations)
        yield Received(msg, trigger_latency_ms(rec), rec)


def latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"n": 0}
    a = np.asarray(latencies_ms)
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p90_ms": round(float(np.percentile(a, 90)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
    }


def make_sender(topics: Topics, kafka: KafkaSettings) -> Sender:
    """A ``Sender`` on a fresh producer, creating the topics first where settings ask for it."""
    if topics.settings.auto_create:
        create_topics(kafka, topics)
    return Sender(make_producer(kafka), topics)


def forget(
    kafka: KafkaSettings, topics: Topics, user_id: str, *, wait_s: float = 0.0
) -> tuple[Sender, ErasureReceipt | None]:
    """Send a ForgetUser; with ``wait_s`` > 0, wait that long for the worker's receipt.

    The receipt is matched by the user's key (the pseudonym, where pseudonyms are on) and by
    the forget's own time, so an older receipt of the same user is never mistaken for it.
    Listening starts before the forget is sent, so a fast worker's receipt is not missed.
    """
    sender = make_sender(topics, kafka)
    msg = ForgetUser(user_id=user_id, ts=utcnow())
    key = (sender.pseudonymiser.user_id(user_id) if sender.pseudonymiser else user_id).encode()

    def send() -> None:
        sender.send(msg)
        sender.flush()

    try:
        if wait_s <= 0:
            send()
            return sender, None
        for rec in consume(kafka, topics.erasures, timeout_s=wait_s, on_ready=send):
            if rec.key != key or rec.value is None:
                continue
            try:
                receipt = decode(rec.value, expect=ErasureReceipt)
            except DecodeError:
                continue
            assert isinstance(receipt, ErasureReceipt)
            if receipt.requested_at == msg.ts:
                return sender, receipt
            if sender.stats.failed:
                break
        return sender, None
    finally:
        sender.close()
