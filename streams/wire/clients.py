"""kafka-python clients of the wire: ``vidrec ingest``, ``replay``, ``subscribe`` and ``forget``.

Producers validate every message before it leaves (a bad line is reported with its line number
and skipped, never sent), and route it by kind to its topic with its key: videos by
``video_id``, user events and forgets by ``user_id``. The subscriber measures end-to-end latency
from the trigger event's Kafka timestamp, which a worker copies into a header of each
``Recommendations`` record (``TRIGGER_TS_HEADER``), to the moment the record is received.
"""

from __future__ import annotations

import argparse
import functools
import json
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
    Recommendations,
    UserEvent,
    VideoPublished,
    decode,
    utcnow,
)
from schemas.messages import _Message
from schemas.wire import TRIGGER_TS_HEADER
from streams.wire.eventlog import BadLine, open_text, read_lines
from streams.wire.privacy import Pseudonymiser
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, create_topics

# The shipped sample at ~25 events/s: what one worker on a small laptop keeps up with.
DEFAULT_SPEED = 900.0


def reports_kafka_errors(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Turn a broker failure in a CLI command into one line and exit code 1, not a traceback."""

    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> int:
            from kafka.errors import KafkaError

            try:
                return fn(*args, **kwargs)
            except KafkaError as exc:
                servers = KafkaSettings().bootstrap_servers
                print(
                    f"vidrec {name}: Kafka at {servers} failed: {exc} "
                    "(is a broker running? 'vidrec kafka up' starts a local one)",
                    file=sys.stderr,
                )
                return 1

        return run

    return wrap


def route(msg: _Message, topics: Topics) -> tuple[str, bytes]:
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


def message_time(msg: _Message) -> float | None:
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

    def send(self, msg: _Message) -> None:
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
    messages: Iterable[_Message | BadLine],
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

    def wait(self, msg: _Message) -> float:
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
    messages: Iterable[_Message | BadLine],
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


def format_recommendations(r: Received, top: int = 5) -> str:
    """A few lines for a human: who, after what, how fast, and the head of the list."""
    recs = r.recs
    e2e = f"e2e {r.e2e_ms:.0f} ms" if r.e2e_ms is not None else "e2e ?"
    lines = [
        f"{recs.generated_at:%H:%M:%S}  user {recs.user_id}  after {recs.trigger_event_id}  "
        f"{e2e}, engine {recs.latency_ms:.1f} ms"
    ]
    for i, it in enumerate(recs.items[:top], start=1):
        src = it.sources
        lines.append(
            f"  {i:>2}. {it.video_id:<24} {it.score:8.4f}   cooc {src.cooc:.2f}  "
            f"content {src.content:.2f}  mf {src.mf:.2f}  popular {src.popular:.2f}"
        )
    return "\n".join(lines)


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


# -- CLI ----------------------------------------------------------------------------------------
def _sender(topics: Topics, kafka: KafkaSettings) -> Sender:
    if topics.settings.auto_create:
        create_topics(kafka, topics)
    return Sender(make_producer(kafka), topics)


@reports_kafka_errors("ingest")
def _cmd_ingest(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    sender = _sender(topics, kafka)
    f = open_text(args.file)
    where = "" if args.file == "-" else f"{args.file}: "
    try:
        stats = ingest(read_lines(f), sender, on_bad=lambda b: _report(b, where))
    finally:
        if f is not sys.stdin:
            f.close()
        sender.close()
    print(f"vidrec ingest: {stats.summary()}", file=sys.stderr)
    if stats.failed:
        return 2
    return 1 if stats.bad_lines else 0


def _count_lines(path: str, limit: int) -> int | None:
    if path == "-":
        return None
    with open_text(path) as f:
        n = sum(1 for _ in f)
    return min(n, limit) if limit else n


def _limited(items: Iterable[Any], limit: int) -> Iterator[Any]:
    for n, item in enumerate(items, start=1):
        if limit and n > limit:
            return
        yield item


@reports_kafka_errors("replay")
def _cmd_replay(args: argparse.Namespace) -> int:
    from streams.wire.eventlog import read_log

    path = args.log
    if path is None:
        from streams.sample.generator import default_sample_path

        path = str(default_sample_path())
    kafka, topics = KafkaSettings(), Topics()
    sender = _sender(topics, kafka)
    pacer = Pacer(None if args.max else args.speed, max_gap_s=args.max_gap)
    bar = None
    last = [0]
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=_count_lines(path, args.limit), unit=" lines", desc="replay", file=sys.stderr
        )

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n - last[0])
            last[0] = n

    pace = "as fast as possible" if args.max else f"at {args.speed:g}x"
    print(f"vidrec replay: {path} -> {topics.settings.prefix}.* {pace}", file=sys.stderr)
    try:
        stats = replay(_limited(read_log(path), args.limit), sender, pacer, on_progress=progress)
    except KeyboardInterrupt:
        stats = sender.stats
        print("vidrec replay: interrupted", file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
        sender.close()
    print(f"vidrec replay: {stats.summary()}", file=sys.stderr)
    return 2 if stats.failed else 0


@reports_kafka_errors("subscribe")
def _cmd_subscribe(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    latencies: list[float] = []
    n = 0
    try:
        for r in subscribe(
            kafka,
            topics,
            user=args.user,
            from_beginning=args.from_beginning,
            timeout_s=args.timeout,
        ):
            n += 1
            if r.e2e_ms is not None and not args.from_beginning:
                latencies.append(r.e2e_ms)
            if args.json:
                out = json.loads(r.recs.to_json())
                out["e2e_ms"] = None if r.e2e_ms is None else round(r.e2e_ms, 1)
                print(json.dumps(out), flush=True)
            else:
                print(format_recommendations(r, args.top), flush=True)
            if args.max and n >= args.max:
                break
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"vidrec subscribe: {exc}", file=sys.stderr)
        return 1
    if args.stats or not args.json:
        print(
            f"vidrec subscribe: {n} lists; e2e latency {latency_summary(latencies)}",
            file=sys.stderr,
        )
    return 0


def forget(
    kafka: KafkaSettings, topics: Topics, user_id: str, *, wait_s: float = 0.0
) -> tuple[Sender, ErasureReceipt | None]:
    """Send a ForgetUser; with ``wait_s`` > 0, wait that long for the worker's receipt.

    The receipt is matched by the user's key (the pseudonym, where pseudonyms are on) and by
    the forget's own time, so an older receipt of the same user is never mistaken for it.
    Listening starts before the forget is sent, so a fast worker's receipt is not missed.
    """
    sender = _sender(topics, kafka)
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


@reports_kafka_errors("forget")
def _cmd_forget(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    sender, receipt = forget(kafka, topics, args.user, wait_s=args.wait)
    if sender.stats.failed:
        print(f"vidrec forget: not delivered: {sender.stats.errors[0]}", file=sys.stderr)
        return 2
    alias = (
        "" if sender.pseudonymiser is None else f" (as {sender.pseudonymiser.user_id(args.user)})"
    )
    print(f"vidrec forget: sent a ForgetUser for {args.user!r}{alias} to {topics.user_events}")
    if args.wait > 0:
        if receipt is None:
            print(
                f"vidrec forget: no receipt on {topics.erasures} within {args.wait:g} s "
                "(is a worker running?)",
                file=sys.stderr,
            )
            return 3
        print(receipt.to_json().decode())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vidrec ingest``, ``replay``, ``subscribe`` and ``forget``."""
    p = subparsers.add_parser(
        "ingest",
        help="send JSON-lines messages (videos, user events, forgets) to their topics",
        description="Validate each JSON line and send it to its topic with its key (videos by "
        "video_id, user events and forgets by user_id). A bad line is reported with its line "
        "number and skipped; exit code 1 when any line was skipped, 2 when delivery failed.",
    )
    p.add_argument("file", nargs="?", default="-", help="JSON-lines file (.gz ok); '-' = stdin")
    p.set_defaults(func=_cmd_ingest)

    r = subparsers.add_parser(
        "replay",
        help="produce an event log with its original pacing (scaled) or as fast as possible",
        description="Produce LOG to the topics in order. With --speed X, records leave with "
        "their stream-time spacing divided by X (the catalogue published before the first "
        "event is sent at once; gaps are capped by --max-gap); with --max, as fast as possible.",
    )
    r.add_argument("log", nargs="?", help="event log (.gz ok); default: the shipped sample")
    pace = r.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"stream seconds per wall second (default {DEFAULT_SPEED:g}: 15 minutes a second)",
    )
    pace.add_argument("--max", action="store_true", help="no pacing at all")
    r.add_argument("--max-gap", type=float, default=5.0, help="longest wait in wall seconds")
    r.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_replay)

    s = subparsers.add_parser(
        "subscribe",
        help="tail the recommendations topic (pretty, or JSON lines)",
        description="Print each published Recommendations as it arrives, with its end-to-end "
        "latency (trigger event produced -> list received).",
    )
    s.add_argument("--user", help="only this user's lists")
    s.add_argument("--json", action="store_true", help="one JSON object a line (adds e2e_ms)")
    s.add_argument("--from-beginning", action="store_true", help="start at the oldest list")
    s.add_argument("--max", type=int, default=0, help="stop after this many lists")
    s.add_argument("--timeout", type=float, default=None, help="stop after S quiet seconds")
    s.add_argument("--top", type=int, default=5, help="items shown per list (pretty output)")
    s.add_argument("--stats", action="store_true", help="print latency percentiles at the end")
    s.set_defaults(func=_cmd_subscribe)

    f = subparsers.add_parser(
        "forget",
        help="erase everything held about a user (sends a ForgetUser)",
        description="Send a ForgetUser for USER on the user-events topic, ordered after the "
        "user's earlier events; the worker that owns the user erases their state, their "
        "share of co-counts and popularity, and their last list, then publishes an "
        "ErasureReceipt on the erasures topic.",
    )
    f.add_argument("user")
    f.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the erasure receipt and print it (exit 3 without one)",
    )
    f.set_defaults(func=_cmd_forget)
