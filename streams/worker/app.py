"""The faust app of ``vidrec worker``: settings, topics, the users table, agents and replication.

A worker is one process holding one ``Engine``. It joins the consumer group
``<prefix>-worker`` for ``videos`` and ``user-events`` (so W workers split the partitions), and
it reads *all* partitions of ``video-vectors`` and ``item-deltas`` from the beginning with a
group-less consumer (the replicator), so that every worker holds the whole catalogue and the
global item state. Per-user state lives in a faust table changelogged to Kafka.

What a restarted worker gets back:

- **user state** (history, seen set, event-id dedup set, last list, user factors): from the
  users table, i.e. its changelog topic, for the partitions it is assigned;
- **catalogue and content vectors**: by replaying the compacted ``video-vectors`` topic (its
  Qdrant index is rebuilt from it; no re-embedding);
- **item state** (co-occurrence counts, item factors, popularity, fusion weights): by replaying
  ``item-deltas``, which is why that topic's retention is unlimited by default (the catalogue
  first: deltas wait until ``video-vectors`` is read);
- **negative-sampling pool**: from the positive items named in the replayed ``item-deltas``;

and it serves no user event before that replay has reached the offsets that existed at start.
Not restored: the event counters. With one partition per topic (one order of events), a worker
killed at any point and restarted publishes the same lists as one never stopped
(``tests/test_recovery.py``); see ``workers.agents.register_agents`` for how a crash between
the table write and the outputs loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.worker import Worker
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.wire import ITEM_DELTAS, STAGES, STATS, USER_EVENTS, VIDEO_VECTORS, VIDEOS
from streams.wire.settings import KafkaSettings, aiokafka_kwargs, ssl_context
from streams.wire.topics import Topics, create_topics, partition_ids
from streams.worker.agents import AGENTS, EMBED, LEARN, Backoff, register_agents
from streams.worker.metrics import WorkerMetrics
from workers.adapter import EngineAdapter, Out
from workers.encoder import load_encoder
from workers.engine import Engine
from workers.index import VideoIndex, VideoIndexError
from workers.settings import load_settings
from workers.thumbnails import ThumbnailReader

log = logging.getLogger(__name__)

USERS_TABLE = "users"


class WorkerSettings(BaseSettings):
    """A streaming worker (``VIDREC_WORKER_...``); broker, topics, encoder, index and engine
    have their own settings (``VIDREC_KAFKA_``, ``VIDREC_TOPIC_``, ``VIDREC_ENCODER_``,
    ``VIDREC_QDRANT_``/``QDRANT_URL``, ``VIDREC_ENGINE_``)."""

    model_config = SettingsConfigDict(env_prefix="VIDREC_WORKER_", extra="ignore")

    role: Literal["all", "embed", "events"] = Field(
        default="all",
        description="'all': embed videos and serve user events; 'embed': only embed videos "
        "into video-vectors (its own consumer group <app id>-embed: no users table, no "
        "replica, no index); 'events': only learn and recommend (vectors arrive by "
        "replication). Run embed workers beside events workers, not beside 'all' ones, which "
        "would embed every video a second time (VIDREC_WORKER_ROLE).",
    )
    store: str = Field(
        default="memory://",
        description="faust table store; memory:// rebuilds tables from their changelog at start "
        "(VIDREC_WORKER_STORE).",
    )
    web_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of faust's web server, which serves /metrics (Prometheus: faust's own "
        "sensor and vidrec's metrics); 0 = off, so several workers on one machine never clash "
        "(VIDREC_WORKER_WEB_PORT).",
    )
    web_host: str = Field(
        default="127.0.0.1",
        description="Interface the web server listens on; 0.0.0.0 for a Prometheus in another "
        "container (VIDREC_WORKER_WEB_HOST).",
    )
    # 256, not the encoder's batch of 64: the encoder sorts a call's texts by length before
    # batching them, so a larger call pads less (MiniLM on 2 cores: 142 titles/s in calls of
    # 64, 253 in calls of 256). Only a backlog fills it; a trickle still goes out within
    # ``video_within_s``.
    video_batch: int = Field(
        default=256, ge=1, le=4096, description="Videos per encoder call (micro-batch cap)."
    )
    video_within_s: float = Field(
        default=0.05, gt=0, description="Longest wait to fill a video micro-batch, seconds."
    )
    delta_dedup: int = Field(
        default=100_000, ge=1, description="Event ids remembered to apply each event's deltas once."
    )
    replicate_max_records: int = Field(default=500, ge=1, description="Records per replica batch.")
    event_batch: int = Field(
        default=100, ge=1, le=10_000, description="User events per micro-batch (at most)."
    )
    event_within_s: float = Field(
        default=0.005,
        gt=0,
        description="Longest wait to fill a micro-batch of user events, seconds.",
    )
    retry_initial_s: float = Field(
        default=0.1,
        gt=0,
        description="First wait before retrying a failing encoder or vector index; it doubles "
        "per failure (VIDREC_WORKER_RETRY_INITIAL_S).",
    )
    retry_max_s: float = Field(
        default=5.0, gt=0, description="Longest wait between retries (VIDREC_WORKER_RETRY_MAX_S)."
    )
    session_timeout_s: float = Field(
        default=60.0,
        ge=6.0,
        description="Kafka group session timeout: how long a worker that died without leaving "
        "(SIGKILL, lost machine) keeps its partitions before the others take them over "
        "(VIDREC_WORKER_SESSION_TIMEOUT_S; the broker's minimum is 6 s by default).",
    )
    status_interval_s: float = Field(
        default=30.0, ge=0, description="Print counters this often (0 = never)."
    )
    stats_interval_s: float = Field(
        default=2.0,
        ge=0,
        description="Publish this worker's figures (schemas.wire.WorkerStats) on the compacted "
        "stats topic this often, for the dashboard of `vidrec serve`; 0 = never "
        "(VIDREC_WORKER_STATS_INTERVAL_S).",
    )
    latency_window_s: float = Field(
        default=30.0,
        gt=0,
        description="How far back the stats record's event -> list latency quantiles look "
        "(VIDREC_WORKER_LATENCY_WINDOW_S).",
    )
    loglevel: str = Field(default="warning", description="Log level of faust and vidrec.")


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust's ``broker_credentials`` for a secured cluster (``None`` for plaintext)."""

    ctx = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        assert kafka.sasl_password is not None
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


@dataclass
class WorkerApp:
    """A configured worker: the faust app and the parts it wires together."""

    app: Any
    adapter: Any
    topics: Topics
    channels: dict[str, Any]
    table: Any
    agents: dict[str, Any]
    ready: asyncio.Event
    settings: WorkerSettings
    kafka: KafkaSettings
    index: Any = None
    executor: ThreadPoolExecutor | None = None
    assigned: set[int] = field(default_factory=set)
    metrics: WorkerMetrics | None = None

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.index is not None:
            self.index.close()
        if self.adapter.thumbnails is not None:
            self.adapter.thumbnails.close()


def make_app(
    worker: WorkerSettings | None = None,
    kafka: KafkaSettings | None = None,
    topics: Topics | None = None,
    *,
    engine: Any = None,
    replicate: bool = True,
    settings: Any = None,
) -> WorkerApp:
    """Build a worker's faust app around an engine.

    Parameters
    ----------
    engine
        The engine to serve; by default one is built from the environment: the encoder of
        ``VIDREC_ENCODER_MODEL_PATH`` (``hashing`` for the model-free one) and a Qdrant index
        (in memory unless ``VIDREC_QDRANT_PATH`` or ``QDRANT_URL``; a local-mode folder can be
        opened by one worker only).
    settings
        The ``workers.settings.LoadedSettings`` that default engine is built from; by default
        ``load_settings()`` (the file of ``VIDREC_SETTINGS_FILE``, if any, under the
        environment).
    replicate
        Start the replicator task; agent tests with ``test_context`` switch it off.
    """

    worker = worker or WorkerSettings()
    kafka = kafka or KafkaSettings()
    topics = topics or Topics()
    names = {"all": AGENTS, "embed": (EMBED,), "events": (LEARN,)}[worker.role]
    embed_only = worker.role == "embed"
    # An embed-only worker keeps no catalogue and searches nothing: it needs no replica.
    replicate = replicate and not embed_only
    index = None
    if engine is None:
        engine, index = _default_engine(settings, with_index=not embed_only)
    adapter = EngineAdapter(
        engine,
        origin=uuid.uuid4().hex,
        delta_dedup=worker.delta_dedup,
        thumbnails=_thumbnail_reader(settings) if EMBED in names else None,
    )
    ts = topics.settings
    app = faust.App(
        # Its own group: the users table's partitions follow the user-events partitions of the
        # group, and a member that reads only videos would get none of them.
        topics.app_id + ("-embed" if embed_only else ""),
        broker=[f"kafka://{s}" for s in kafka.servers],
        broker_credentials=faust_credentials(kafka),
        store=worker.store,
        autodiscover=False,
        web_enabled=worker.web_port > 0,
        web_port=worker.web_port or 6066,
        web_host=worker.web_host,
        web_bind=worker.web_host,  # faust binds 0.0.0.0 unless told: /metrics stays local
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=ts.partitions,
        topic_replication_factor=ts.replication_factor,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_s / 3),
    )

    def topic(stage: str) -> Any:
        spec = topics.specs[stage]
        return app.topic(spec.name, key_type=bytes, value_type=bytes, partitions=spec.partitions)

    channels = {s: topic(s) for s in STAGES}
    table = (
        None
        if embed_only
        else app.Table(USERS_TABLE, key_type=bytes, value_type=bytes, partitions=ts.partitions)
    )
    ready = asyncio.Event()
    if not replicate:
        ready.set()
    executor = (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidrec-encoder")
        if EMBED in names
        else None
    )

    async def flush() -> None:
        await app.producer.flush()

    # the input stages this worker reads, and their topics (for lag and dead-letter labels)
    reads = [stage for stage, agent in ((VIDEOS, EMBED), (USER_EVENTS, LEARN)) if agent in names]
    metrics = WorkerMetrics(adapter, reads, latency_window_s=worker.latency_window_s)
    if worker.web_port > 0:
        from faust.sensors.prometheus import setup_prometheus_sensors

        # faust's own sensor (messages, events, table operations, commits, rebalances, as
        # faust_*) and vidrec's metrics, served together on the web server's /metrics
        setup_prometheus_sensors(app, registry=metrics.registry, name_prefix="faust")
    send = direct_send(app, channels)

    agents = register_agents(
        app,
        adapter,
        channels,
        table,
        names=names,
        video_batch=worker.video_batch,
        video_within_s=worker.video_within_s,
        event_batch=worker.event_batch,
        event_within_s=worker.event_within_s,
        executor=executor,
        ready=ready,
        flush=flush if replicate else None,
        backoff=Backoff(adapter.counts, worker.retry_initial_s, worker.retry_max_s),
        send=send,
        metrics=metrics,
    )
    wa = WorkerApp(
        app, adapter, topics, channels, table, agents, ready, worker, kafka, index, executor
    )
    wa.metrics = metrics
    _connect_signals(wa)
    if replicate:
        app.task(_replicator(wa))
    if worker.status_interval_s > 0:
        app.timer(worker.status_interval_s)(_status(wa))
    if worker.web_port > 0 or worker.stats_interval_s > 0:
        app.timer(1.0)(_refresh_lag(wa, [topics.specs[stage].name for stage in reads]))
    if worker.stats_interval_s > 0:
        app.timer(worker.stats_interval_s)(_publish_stats(wa, send))
    return wa


def direct_send(app: Any, channels: dict[str, Any]) -> Callable[[Out], Awaitable[Any]]:
    """Send an ``Out`` straight to the app's producer, not through ``channel.send``.

    The same producer call that a faust topic makes, in the same order, without the message
    object, future and sensor callbacks faust builds around it per record (a large share of
    a worker's time per event). Delivery is what the producer's flush waits for, as before.
    """
    names = {stage: ch.get_topic_name() for stage, ch in channels.items()}

    async def send(o: Out) -> Any:
        return await app.producer.send(
            names[o.stage], o.key, o.value, None, None, o.headers or None
        )

    return send


def _thumbnail_reader(settings: Any = None) -> ThumbnailReader | None:
    """The embed agent's thumbnail reader (``VIDREC_THUMBNAILS_...``); None when disabled."""
    ts = settings.thumbnails if settings is not None else load_settings().thumbnails
    return ThumbnailReader(ts) if ts.enabled else None


def _default_engine(settings: Any = None, with_index: bool = True) -> tuple[Any, Any]:

    settings = settings or load_settings()
    encoder = load_encoder(settings.encoder)
    index = VideoIndex(settings.index, dim=encoder.dim) if with_index else None
    return Engine(settings.engine, encoder, index), index


def _say(wa: WorkerApp, text: str) -> None:
    """A status line on stderr (what ``vidrec up`` and the tests wait for)."""
    print(f"vidrec worker {wa.adapter.origin[:8]}: {text}", file=sys.stderr, flush=True)


def _connect_signals(wa: WorkerApp) -> None:
    # the topic whose partitions a worker serves: videos for an embed-only one
    user_topic = wa.topics.videos if wa.settings.role == "embed" else wa.topics.user_events

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == user_topic}
        wa.assigned -= gone
        evicted = wa.adapter.evict_partitions(gone)
        if gone:
            log.info(
                "revoked %s partitions %s; evicted %d users", user_topic, sorted(gone), evicted
            )

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        wa.assigned = {tp.partition for tp in assigned if tp.topic == user_topic}
        parts = sorted(wa.assigned)

        async def announce() -> None:
            await wa.ready.wait()
            if sorted(wa.assigned) == parts:
                _say(wa, f"serving {user_topic} partitions {parts}")

        asyncio.ensure_future(announce())

    wa.app.on_partitions_revoked.connect(on_revoked)
    wa.app.on_partitions_assigned.connect(on_assigned)


def _replicator(wa: WorkerApp) -> Any:
    """The task that feeds every worker all of ``video-vectors`` and ``item-deltas``."""

    async def replicate() -> None:

        stage_of = {wa.topics.video_vectors: VIDEO_VECTORS, wa.topics.item_deltas: ITEM_DELTAS}
        consumer = AIOKafkaConsumer(
            **aiokafka_kwargs(wa.kafka),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            loop = asyncio.get_running_loop()
            ids = await loop.run_in_executor(None, partition_ids, wa.kafka, list(stage_of))
            tps = [TopicPartition(t, p) for t in stage_of for p in ids.get(t, ())]
            missing = sorted(set(stage_of) - set(ids))
            if missing:
                raise RuntimeError(f"topics {missing} are missing: run 'vidrec topics create'")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            behind = {tp for tp, end in ends.items() if end > 0}
            # Catch-up rebuilds the catalogue before the item state: a delta naming a video
            # whose vector is still unread would give that item factors from noise instead of
            # from its content, unlike the worker that first applied it.
            vectors_behind = {tp for tp in behind if stage_of[tp.topic] == VIDEO_VECTORS}
            paused = (
                [tp for tp in tps if stage_of[tp.topic] == ITEM_DELTAS] if vectors_behind else []
            )
            if paused:
                consumer.pause(*paused)
            if not behind:
                wa.ready.set()
            retry = Backoff(wa.adapter.counts, wa.settings.retry_initial_s, wa.settings.retry_max_s)
            while True:
                batch = await consumer.getmany(
                    timeout_ms=200, max_records=wa.settings.replicate_max_records
                )
                # Videos first: deltas of a batch may name videos of the same batch.
                for tp in sorted(batch, key=lambda tp: stage_of[tp.topic] != VIDEO_VECTORS):
                    stage, values = stage_of[tp.topic], [r.value for r in batch[tp]]
                    if stage == VIDEO_VECTORS:
                        # A failing or slow index holds this task here (no further records
                        # are fetched) until the batch is stored: no video is skipped.
                        await retry.run(
                            _sync(wa.adapter.on_replicated, stage, values),
                            f"indexing {len(values)} replicated videos",
                            "index_retries",
                            retry_on=(VideoIndexError,),
                        )
                    else:
                        # the headers let a worker skip its own deltas without decoding them
                        heads = [r.headers for r in batch[tp]]
                        wa.adapter.on_replicated(stage, values, heads)
                if behind:
                    for tp in list(behind):
                        if await consumer.position(tp) >= ends[tp]:
                            behind.discard(tp)
                            vectors_behind.discard(tp)
                    if paused and not vectors_behind:
                        consumer.resume(*paused)
                        paused = []
                    if not behind:
                        c = wa.adapter.counts
                        _say(
                            wa,
                            f"replica caught up: {c['videos_replicated']} videos, "
                            f"{c['deltas_replicated']} item deltas",
                        )
                        wa.ready.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A worker without replication would serve stale item state for ever: stop it.
            log.exception("replicator failed")
            await wa.app.crash(exc)
        finally:
            await consumer.stop()

    return replicate


def _sync(fn: Any, *args: Any) -> Any:
    """An async call of ``fn(*args)`` (what ``Backoff.run`` retries)."""

    async def call() -> Any:
        return fn(*args)

    return call


def _status(wa: WorkerApp) -> Any:
    async def status() -> None:
        c = dict(wa.adapter.counts)
        engine = wa.adapter.engine
        c["degraded_searches"] = getattr(engine, "degraded_searches", 0)
        if engine.index is not None:
            try:
                c["indexed"] = engine.index.count()
            except VideoIndexError:
                c["indexed"] = -1
        _say(wa, " ".join(f"{k}={v}" for k, v in c.items()))

    return status


def _refresh_lag(wa: WorkerApp, topics: list[str]) -> Any:
    async def refresh_lag() -> None:
        assert wa.metrics is not None
        try:
            await wa.metrics.refresh_lag(wa.app.consumer, topics)
        except Exception as exc:  # a consumer between assignments: the next tick tries again
            log.debug("consumer lag not refreshed: %s", exc)

    return refresh_lag


def _publish_stats(wa: WorkerApp, send: Callable[[Out], Awaitable[Any]]) -> Any:
    """The timer that sends the worker's ``WorkerStats`` to the stats topic (key: worker id).

    Figures are telemetry: a failure to build or send one is logged (the first, then every
    30th) and counted, and never stops the worker.
    """

    async def publish_stats() -> None:
        m = wa.metrics
        assert m is not None
        try:
            record = m.stats()
            await send(Out(STATS, m.worker_id.encode(), record.to_json()))
        except Exception as exc:
            m.stats_failures += 1
            if m.stats_failures % 30 == 1:
                log.warning("worker stats not published (%d failures): %s", m.stats_failures, exc)

    return publish_stats


def faust_worker(wa: WorkerApp) -> Any:
    """The faust ``Worker`` that runs the app, without faust's terminal spinner.

    The spinner spins once per log record, so faust sets the root logger to DEBUG for it:
    every debug call of aiokafka (a few per record produced or fetched) then builds a log
    record that the handlers drop (a few percent of a worker's time).
    """

    worker = Worker(wa.app, loglevel=wa.settings.loglevel, quiet=True, redirect_stdouts=False)
    worker.spinner = None
    return worker


def run(wa: WorkerApp) -> int:
    """Run the worker until SIGINT/SIGTERM; returns the exit code."""
    if wa.topics.settings.auto_create:
        create_topics(wa.kafka, wa.topics)
    worker = faust_worker(wa)
    _say(wa, f"starting: group {wa.topics.app_id}, {wa.kafka.bootstrap_servers}")
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        wa.close()
    return 0
