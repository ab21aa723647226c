"""What the streaming and freshness sections share: bench topics and workers on the broker,
producing records to a topic and timing their arrivals on another.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streams.bench.synthetic import ItemSampler, synthetic_events
from streams.worker.process import WorkerProcess, wait_until_serving

PARTITIONS = 6


@dataclass
class Arrivals:
    """Records received on one topic: arrival times (wall seconds) and what came with them."""

    times: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = 0.0

    def sustained(self) -> float:
        """Records/s between the 10th and the 90th percentile of arrivals (the steady part)."""
        n = len(self.times)
        if n < 2:
            return 0.0
        a, b = n // 10, (9 * n) // 10
        if b <= a or self.times[b - 1] <= self.times[a]:
            a, b = 0, n
        span = self.times[b - 1] - self.times[a]
        if span > 0:
            return (b - 1 - a) / span
        # everything came in one poll: fall back to the whole run
        whole = self.times[-1] - self.started
        return n / whole if whole > 0 else 0.0


def producer_thread(
    kafka: Any,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    rate: float | None,
    sent_at: dict[bytes, float] | None = None,
) -> threading.Thread:
    """Produce ``records`` (key, value) as fast as possible, or paced at ``rate`` per second."""
    from streams.wire.clients import make_producer

    def run() -> None:
        producer = make_producer(kafka)
        try:
            t0 = time.perf_counter()
            for i, (k, v) in enumerate(records):
                if rate:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                if sent_at is not None:
                    sent_at[k] = time.time()
                producer.send(topic, key=k, value=v)
            producer.flush(timeout=60)
        finally:
            producer.close()

    return threading.Thread(target=run, daemon=True, name="bench-producer")


def collect(
    kafka: Any,
    topic: str,
    n: int,
    records: Sequence[tuple[bytes, bytes]] = (),
    produce_to: str | None = None,
    rate: float | None = None,
    idle_s: float = 30.0,
    on_record: Callable[[Any], float | None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Arrivals:
    """Tail ``topic`` until ``n`` records arrived (or none for ``idle_s``), producing ``records``
    to ``produce_to`` once the tail is in place (``on_ready`` is called then too); ``on_record``
    may return a latency."""
    from streams.wire.clients import consume, trigger_latency_ms

    out = Arrivals()
    producer: threading.Thread | None = None

    def start() -> None:
        nonlocal producer
        out.started = time.time()
        if records and produce_to:
            producer = producer_thread(kafka, produce_to, records, rate)
            producer.start()
        if on_ready is not None:
            on_ready()

    for rec in consume(kafka, topic, timeout_s=idle_s, on_ready=start):
        out.times.append(rec.received_ms / 1000.0)
        lat = on_record(rec) if on_record is not None else trigger_latency_ms(rec)
        if lat is not None:
            out.latencies_ms.append(lat)
        if len(out.times) >= n:
            break
    if producer is not None:
        producer.join(timeout=60)
    return out


def event_records(
    n: int, n_videos: int, n_users: int, serial: int, seed: int
) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    events = synthetic_events(
        ItemSampler(n_videos, rng).draw(n), rng.integers(0, n_users, n), rng, serial, validate=True
    )
    return [(e.user_id.encode(), e.to_json()) for e in events]


def bench_topics(prefix: str) -> Any:
    from streams.wire.topics import Topics, TopicSettings

    return Topics(
        TopicSettings(prefix=prefix, partitions=PARTITIONS, internal_partitions=PARTITIONS)
    )


def start_workers(kafka: Any, prefix: str, n: int, encoder: str) -> list[Any]:
    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": str(PARTITIONS),
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
        "VIDREC_QDRANT_PATH": None,  # a throwaway embedded index per worker
        "QDRANT_URL": None,
    }
    if encoder == "hashing":
        env["VIDREC_ENCODER_MODEL_PATH"] = "hashing"
    workers = [WorkerProcess(f"{prefix}-w{i}", env=env) for i in range(n)]
    try:
        wait_until_serving(workers, PARTITIONS)
    except RuntimeError:
        for w in workers:
            w.stop()
        raise
    return workers


@dataclass
class StreamSettings:
    events: int
    videos: int
    users: int
    rate: float
    fresh_seconds: float
    video_rate: float
    video_seconds: float
    encoder: str  # "minilm" or "hashing"


def broker_answers(timeout_s: float = 3.0) -> str | None:
    """``None`` when the broker of ``VIDREC_KAFKA_*`` answers, else why not."""
    from streams.wire.broker import wait_for_broker
    from streams.wire.settings import KafkaSettings

    kafka = KafkaSettings()
    try:
        wait_for_broker(kafka.bootstrap_servers, timeout_s=timeout_s, settings=kafka)
    except TimeoutError as exc:
        return f"no broker at {kafka.bootstrap_servers}: {exc}"
    return None


class CpuWatch:
    """Where the machine's CPU went during a run: its busy share and the workers' own CPU.

    Two workers can only beat one if there are cores to spare; on the 2-core box the broker and
    the bench's producer and subscriber share them, so the two-worker row reports this to say
    which it was. Reads ``/proc`` (Linux); elsewhere every figure is ``None``.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._t = time.perf_counter()
        self._stat = _proc_stat()
        self._cpu = [_proc_cpu_s(p) for p in pids]

    def done(self) -> dict[str, Any]:
        wall = time.perf_counter() - self._t
        stat, cpu = _proc_stat(), [_proc_cpu_s(p) for p in self.pids]
        busy = None
        if stat is not None and self._stat is not None:
            total = sum(stat) - sum(self._stat)
            idle = (stat[3] + stat[4]) - (self._stat[3] + self._stat[4])  # idle + iowait
            busy = 1.0 - idle / total if total > 0 else None
        workers = [
            b - a if a is not None and b is not None else None
            for a, b in zip(self._cpu, cpu, strict=True)
        ]
        return {"wall_s": wall, "busy": busy, "cores": os.cpu_count(), "workers_cpu_s": workers}

    @staticmethod
    def describe(d: dict[str, Any]) -> str:
        if d["busy"] is None:
            return ""
        used = [f"{w:.1f}" for w in d["workers_cpu_s"] if w is not None]
        return (
            f"; CPU over the {d['wall_s']:.1f} s: {d['cores']} cores {100 * d['busy']:.0f} % busy, "
            f"the workers {' + '.join(used)} core-s, the rest (broker, bench) "
            f"{d['busy'] * d['cores'] * d['wall_s'] - sum(float(u) for u in used):.1f} core-s"
        )


def _proc_stat() -> list[int] | None:
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def _proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
