"""A soak run: the streaming system at a fixed rate for a while, checked for holding up.

It starts worker process(es) on topics of its own (or uses running workers of a given prefix),
replays an event log (the shipped sample, cycled with fresh event ids when it runs out) at a
fixed rate of user events per second, slips in a few undecodable records on purpose, and
samples the workers' resident memory (``/proc/PID/status``) and the group's consumer lag as it
goes. At the end it reports events in, lists out, dead letters, memory and lag over time, and
whether nothing was lost: every accepted event got a list and every bad record a dead letter.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, create_topics

BAD_RECORDS = (
    b"{this is not json",
    b'{"kind":"event","event_id":"soak-bad","user_id":"soak-bad","type":"play"}',
    b"\xff\xfe\x00 binary garbage",
)
BAD_KEY = b"soak-bad"


@dataclass
class Sample:
    """One look at the system during the run."""

    t_s: float
    events_sent: int
    lists: int
    rss_mb: list[float]
    lag: int | None


@dataclass
class SoakReport:
    """What ``vidrec soak`` measured; ``ok`` is the verdict (nothing lost)."""

    seconds: float
    rate: float
    events_sent: int = 0
    videos_sent: int = 0
    bad_sent: int = 0
    send_failures: int = 0
    lists: int = 0
    lists_distinct: int = 0
    missing: int = 0
    dead_letters: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    workers_alive: bool = True
    drained_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.send_failures == 0
            and self.dead_letters == self.bad_sent
            and self.workers_alive
        )

    def to_dict(self) -> dict[str, Any]:
        rss = [max(s.rss_mb) for s in self.samples if s.rss_mb]
        lags = [s.lag for s in self.samples if s.lag is not None]
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "rate": self.rate,
            "achieved_rate": round(self.events_sent / self.seconds, 1) if self.seconds else 0.0,
            "events_sent": self.events_sent,
            "videos_sent": self.videos_sent,
            "bad_sent": self.bad_sent,
            "send_failures": self.send_failures,
            "lists": self.lists,
            "lists_distinct": self.lists_distinct,
            "missing": self.missing,
            "dead_letters": self.dead_letters,
            "latency_ms": self.latency,
            "rss_mb": {
                "first": rss[0] if rss else None,
                "max": max(rss) if rss else None,
                "last": rss[-1] if rss else None,
            },
            "lag": {"max": max(lags) if lags else None, "last": lags[-1] if lags else None},
            "drained_s": round(self.drained_s, 1),
            "workers_alive": self.workers_alive,
            "samples": [
                {
                    "t_s": round(s.t_s, 1),
                    "events_sent": s.events_sent,
                    "lists": s.lists,
                    "rss_mb": s.rss_mb,
                    "lag": s.lag,
                }
                for s in self.samples
            ],
        }


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (``VmRSS``), ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except (OSError, ValueError):
        return None
    return None


def cycled(messages: list[Any], span_s: float) -> Iterator[Any]:
    """The log's messages for ever: each later pass carries its events forward in time by
    ``span_s`` per pass, with fresh event ids (``<id>~<pass>``), and no videos (they exist)."""
    from schemas import UserEvent

    n = 0
    while True:
        for m in messages:
            if n == 0:
                yield m
            elif isinstance(m, UserEvent):
                from datetime import timedelta

                yield m.model_copy(
                    update={
                        "event_id": f"{m.event_id}~{n}",
                        "ts": m.ts + timedelta(seconds=span_s * n),
                    }
                )
        n += 1


class _Lag:
    """The group's committed lag on ``user-events`` (end offsets minus committed offsets)."""

    def __init__(self, kafka: KafkaSettings, topics: Topics) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from streams.wire.topics import admin_client

        self.topic = topics.user_events
        self.group = topics.app_id
        self.admin = admin_client(kafka)
        self.consumer = KafkaConsumer(**kafka.client_kwargs(), group_id=None)
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        self.tps = [TopicPartition(self.topic, p) for p in sorted(parts)]

    def __call__(self) -> int | None:
        try:
            ends = self.consumer.end_offsets(self.tps)
            committed = self.admin.list_group_offsets(self.group).get(self.group, {})
        except Exception as exc:  # noqa: BLE001 - a sample is skipped, the soak goes on
            print(f"vidrec soak: lag sample failed: {exc}", file=sys.stderr)
            return None
        lag = 0
        for tp in self.tps:
            c = committed.get(tp)
            lag += ends.get(tp, 0) - (c.offset if c is not None and c.offset >= 0 else 0)
        return lag

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def soak(
    kafka: KafkaSettings,
    topics: Topics,
    *,
    seconds: float,
    rate: float,
    log_path: str,
    workers: int = 1,
    bad_every: int = 1000,
    sample_every_s: float = 5.0,
    drain_s: float = 60.0,
    worker_env: dict[str, str | None] | None = None,
    echo: Any = None,
) -> SoakReport:
    """Run one soak; see the module docstring. ``workers=0`` uses workers already running on
    ``topics``' prefix (their memory is then not sampled)."""
    from schemas.wire import DeadLetter
    from streams.wire.clients import Sender, consume, latency_summary, make_producer, subscribe
    from streams.wire.eventlog import BadLine, read_log
    from streams.worker.process import WorkerProcess, wait_until_serving

    if rate <= 0 or seconds <= 0:
        raise ValueError("rate and duration must be > 0")
    from schemas import UserEvent, VideoPublished

    messages = [m for m in read_log(log_path) if not isinstance(m, BadLine)]
    events_ts = [m.ts.timestamp() for m in messages if isinstance(m, UserEvent)]
    if not events_ts:
        raise ValueError(f"{log_path} holds no user events")
    span = max(events_ts) - min(events_ts) + 3600.0
    create_topics(kafka, topics)
    report = SoakReport(seconds=0.0, rate=rate)
    procs: list[WorkerProcess] = []
    stop = threading.Event()
    sent_ids: set[str] = set()
    got_ids: set[str] = set()
    latencies: list[float] = []
    counts = {"lists": 0}
    lock = threading.Lock()
    started = threading.Event()
    try:
        env = {"VIDREC_TOPIC_PREFIX": topics.settings.prefix, **(worker_env or {})}
        for i in range(workers):
            procs.append(WorkerProcess(f"soak-worker-{i + 1}", env=env, echo=echo))
        if procs:
            wait_until_serving(procs, topics.specs["user-events"].partitions)

        def collect() -> None:
            for r in subscribe(kafka, topics, stop=stop, on_ready=started.set):
                with lock:
                    counts["lists"] += 1
                    if r.recs.trigger_event_id is not None:
                        got_ids.add(r.recs.trigger_event_id)
                    if r.e2e_ms is not None:
                        latencies.append(r.e2e_ms)

        collector = threading.Thread(target=collect, name="soak-collect", daemon=True)
        collector.start()
        if not started.wait(60):
            raise RuntimeError("the subscriber did not start")
        producer = make_producer(kafka)
        sender = Sender(producer, topics)
        lag = _Lag(kafka, topics)
        t0 = time.monotonic()
        next_sample = t0
        n = 0

        def sample() -> None:
            with lock:
                lists = counts["lists"]
            report.samples.append(
                Sample(
                    time.monotonic() - t0,
                    n,
                    lists,
                    [x for x in (rss_mb(p.proc.pid) for p in procs) if x is not None],
                    lag(),
                )
            )
            if echo is not None:
                s = report.samples[-1]
                echo(
                    f"soak {s.t_s:6.0f} s: {s.events_sent} events in, {s.lists} lists out, "
                    f"rss {s.rss_mb} MiB, lag {s.lag}"
                )

        try:
            for m in cycled(messages, span):
                now = time.monotonic()
                if now - t0 >= seconds:
                    break
                if now >= next_sample:
                    sample()
                    next_sample += sample_every_s
                if not isinstance(m, UserEvent):  # videos (and forgets) are not paced
                    sender.send(m)
                    report.videos_sent += isinstance(m, VideoPublished)
                    continue
                due = t0 + n / rate
                if due > now:
                    time.sleep(due - now)
                sender.send(m)
                with lock:
                    sent_ids.add(m.event_id)
                n += 1
                if bad_every and n % bad_every == 0:
                    bad = BAD_RECORDS[report.bad_sent % len(BAD_RECORDS)]
                    producer.send(topics.user_events, key=BAD_KEY, value=bad)
                    report.bad_sent += 1
            report.seconds = time.monotonic() - t0
            report.events_sent = n
            sender.flush()
            report.send_failures = sender.stats.failed
            # drain: wait until every event has a list (or the drain time is up)
            t1 = time.monotonic()
            while time.monotonic() - t1 < drain_s:
                with lock:
                    if sent_ids <= got_ids:
                        break
                if procs and not all(p.alive() for p in procs):
                    break
                time.sleep(0.5)
            report.drained_s = time.monotonic() - t1
            sample()
        finally:
            sender.close()
            lag.close()
        stop.set()
        collector.join(timeout=10)
        with lock:
            report.lists = counts["lists"]
            report.lists_distinct = len(got_ids & sent_ids)
            report.missing = len(sent_ids - got_ids)
            report.latency = latency_summary(latencies)
        dead = 0
        for r in consume(kafka, topics.dead_letters, from_beginning=True, timeout_s=5.0):
            try:
                if DeadLetter.from_json(r.value or b"").key == BAD_KEY:
                    dead += 1
            except (ValueError, KeyError, TypeError):
                continue
        report.dead_letters = dead
        report.workers_alive = all(p.alive() for p in procs)
    finally:
        stop.set()
        for p in procs:
            p.stop()
    return report


def format_report(r: SoakReport) -> str:
    d = r.to_dict()
    lines = [
        f"vidrec soak: {'OK, nothing lost' if r.ok else 'FAILED'}",
        f"  ran {d['seconds']} s at {r.rate:g} events/s (achieved {d['achieved_rate']}/s); "
        f"drained in {d['drained_s']} s",
        f"  in:  {r.events_sent} user events, {r.videos_sent} videos, {r.bad_sent} bad records "
        f"({r.send_failures} not delivered)",
        f"  out: {r.lists} lists for {r.lists_distinct} events; {r.missing} events without a "
        f"list; {r.dead_letters} dead letters for the bad records",
        f"  end-to-end latency: {d['latency_ms']}",
        f"  worker RSS MiB: first {d['rss_mb']['first']}, max {d['rss_mb']['max']}, "
        f"last {d['rss_mb']['last']}; consumer lag max {d['lag']['max']}, last {d['lag']['last']}",
        "  t_s   events_in  lists_out  rss_mb  lag",
    ]
    for s in r.samples:
        lines.append(f"  {s.t_s:5.0f} {s.events_sent:10d} {s.lists:10d}  {s.rss_mb}  {s.lag}")
    return "\n".join(lines)
