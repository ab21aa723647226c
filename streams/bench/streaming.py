"""The ``streaming`` section: one worker on the broker against a raw aiokafka consume-and-produce
passthrough (run as ``python -m streams.bench.streaming SRC DST GROUP``), and two workers.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from typing import Any

import numpy as np

from streams.bench.freshness import bench_freshness
from streams.bench.kafka_io import (
    PARTITIONS,
    Arrivals,
    CpuWatch,
    StreamSettings,
    bench_topics,
    collect,
    event_records,
    producer_thread,
    start_workers,
)
from streams.bench.report import Report, Row
from streams.bench.synthetic import synthetic_titles, synthetic_videos
from streams.worker.process import WorkerProcess

# workers.* (torch, qdrant) is imported inside the functions: `vidrec --help` loads this module.


async def _passthrough(kafka: Any, src: str, dst: str, group: str) -> None:
    """Consume ``src`` in a group and produce every record to ``dst``: the broker's ceiling."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.abc import ConsumerRebalanceListener

    from streams.wire.settings import aiokafka_kwargs

    class Announce(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            return None

        async def on_partitions_assigned(self, assigned: Any) -> None:
            if assigned:
                print(f"passthrough ready: {len(assigned)} partitions", file=sys.stderr, flush=True)

    kw = aiokafka_kwargs(kafka)
    consumer = AIOKafkaConsumer(
        **kw, group_id=group, auto_offset_reset="earliest", enable_auto_commit=True
    )
    consumer.subscribe([src], listener=Announce())
    producer = AIOKafkaProducer(**kw, acks="all")  # as faust's producer (acks=-1)
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            sent = [
                await producer.send(dst, r.value, key=r.key)
                for records in batch.values()
                for r in records
            ]
            if sent:
                await asyncio.gather(*sent)
    finally:
        await consumer.stop()
        await producer.stop()


def passthrough_main(argv: list[str]) -> int:
    from streams.wire.settings import KafkaSettings

    src, dst, group = argv
    asyncio.run(_passthrough(KafkaSettings(), src, dst, group))
    return 0


def bench_streaming(
    s: StreamSettings, throughput: bool, freshness: bool, report: Report
) -> list[Row]:
    """Throughput (passthrough, 1 worker, 2 workers) and freshness on the broker, in one run."""
    from streams.wire.settings import KafkaSettings
    from streams.wire.topics import create_topics, delete_prefix

    kafka = KafkaSettings()
    rows: list[Row] = []
    run_id = uuid.uuid4().hex[:8]
    titles = synthetic_titles(s.videos)
    events = event_records(s.events, s.videos, s.users, 0, seed=1)
    rates: dict[str, float] = {}

    # 1. the ceiling: a raw aiokafka consume-and-produce passthrough
    if throughput:
        prefix = f"bench-{run_id}-pass"
        topics = bench_topics(prefix)
        # The backlog is in the topic before the passthrough starts: the producer never paces it.
        backlog = list(events) * 4
        children: list[WorkerProcess] = []
        got = Arrivals()

        def spawn() -> None:
            children.append(
                WorkerProcess(
                    "passthrough",
                    {"VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers},
                    command=[sys.executable, "-m", "streams.bench.streaming",
                             topics.user_events, topics.recommendations, f"{prefix}-group"],
                )
            )  # fmt: skip

        try:
            create_topics(kafka, topics)
            producer = producer_thread(kafka, topics.user_events, backlog, None)
            producer.start()
            producer.join()
            got = collect(kafka, topics.recommendations, len(backlog), on_ready=spawn)
            rates["passthrough"] = got.sustained()
        finally:
            for child in children:
                child.stop()
                if len(got.times) < len(backlog):
                    print("\n".join(child.lines[-30:]), file=sys.stderr)
            delete_prefix(kafka, prefix)
        rows.append(
            Row("streaming", "raw aiokafka passthrough (consume + produce)",
                f"{rates['passthrough']:,.0f} records/s",
                f"{len(got.times)}/{len(backlog)} records of a backlog, {PARTITIONS} partitions, "
                "acks=all, one process")
        )  # fmt: skip

    # 2. one worker: embed the catalogue, then events as fast as it takes them, then paced
    prefix = f"bench-{run_id}-w1"
    topics = bench_topics(prefix)
    vectors = None
    workers: list[Any] = []
    try:
        create_topics(kafka, topics)
        workers = start_workers(kafka, prefix, 1, s.encoder)
        from workers.encoder import load_encoder
        from workers.settings import EncoderSettings

        enc_settings = EncoderSettings(model_path="hashing" if s.encoder == "hashing" else None)
        encoder = load_encoder(enc_settings)
        rng = np.random.default_rng(2)
        videos = synthetic_videos(0, s.videos, rng, titles)
        texts = [v.text() for v in videos]  # what the embed agent encodes: title and category
        encoder.encode_many(texts[:64])
        t = time.perf_counter()
        vectors = encoder.encode_many(texts)
        raw = len(texts) / (time.perf_counter() - t)
        vrecs = [(v.video_id.encode(), v.to_json()) for v in videos]
        got = collect(kafka, topics.video_vectors, len(vrecs), vrecs, topics.videos)
        embed = len(got.times) / (got.times[-1] - got.started) if got.times else 0.0
        time.sleep(1.0)  # the worker's replicator applies the last vectors
        cpu = CpuWatch([w.proc.pid for w in workers])
        got = collect(kafka, topics.recommendations, len(events), events, topics.user_events)
        rates["1 worker"] = got.sustained()
        one_cpu = CpuWatch.describe(cpu.done())
        if throughput:
            rows.append(
                Row("streaming", "1 worker, a Recommendations per accepted event",
                    f"{rates['1 worker']:,.0f} events/s",
                    f"{len(got.times)}/{len(events)} events as a backlog, {s.videos} videos, "
                    f"{s.users} users, Zipf items, encoder {s.encoder}{one_cpu}",
                    ">= 1,500 events/s", rates["1 worker"] >= 1500)
            )  # fmt: skip
            if "passthrough" in rates:
                ratio = rates["1 worker"] / max(rates["passthrough"], 1e-9)
                rows.append(
                    Row("streaming", "1 worker / passthrough", f"{ratio:.3f}",
                        "same broker, same events, same run", ">= 0.25", ratio >= 0.25)
                )  # fmt: skip
        if freshness:
            rows += bench_freshness(kafka, topics, s, rates["1 worker"], raw, embed, report)
    finally:
        for w in workers:
            w.stop()
        delete_prefix(kafka, prefix)

    # 3. two workers on the same catalogue (its vectors produced straight to video-vectors)
    if throughput:
        from schemas.wire import encode_video_vector

        prefix = f"bench-{run_id}-w2"
        topics = bench_topics(prefix)
        try:
            from streams.wire.clients import make_producer

            create_topics(kafka, topics)
            producer = make_producer(kafka)
            videos = synthetic_videos(0, s.videos, np.random.default_rng(2), titles)
            for v, vec in zip(videos, vectors, strict=True):
                value = encode_video_vector(v, vec, "bench", "bench")
                producer.send(topics.video_vectors, key=v.video_id.encode(), value=value)
            producer.flush(60)
            producer.close()
            workers = start_workers(kafka, prefix, 2, "hashing")
            try:
                cpu = CpuWatch([w.proc.pid for w in workers])
                got = collect(
                    kafka, topics.recommendations, len(events), events, topics.user_events
                )
                rates["2 workers"] = got.sustained()
                two_cpu = CpuWatch.describe(cpu.done())
            finally:
                for w in workers:
                    w.stop()
        finally:
            delete_prefix(kafka, prefix)
        two = rates["2 workers"]
        rows.append(
            Row("streaming", "2 workers", f"{two:,.0f} events/s",
                f"{len(got.times)}/{len(events)} events as a backlog; "
                f"x{two / rates['1 worker']:.2f} of 1 worker, same run, same machine as the broker"
                f"{two_cpu}", ">= x1.6 of 1 worker", two >= 1.6 * rates["1 worker"])
        )  # fmt: skip
    report.stream_rates.update(rates)
    return rows


if __name__ == "__main__":
    raise SystemExit(passthrough_main(sys.argv[1:]))
