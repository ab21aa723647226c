"""The faust side of a worker: its agents, the staged table, and the retry backoff.

The agents are a few lines each: they take records off a faust stream, hand them to
``workers.adapter.EngineAdapter`` (which knows nothing of faust), and send what it returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, MutableMapping
from concurrent.futures import Executor
from typing import Any, TypeVar

from schemas import VideoPublished
from schemas.wire import (
    USER_EVENTS,
    VIDEOS,
)
from workers.adapter import EngineAdapter, Meta, Out

log = logging.getLogger(__name__)
T = TypeVar("T")
LEARN, EMBED = "learn-and-recommend", "embed"
AGENTS = (LEARN, EMBED)


def meta_of(event: Any) -> Meta:
    """``Meta`` of a faust event (faust gives the Kafka timestamp in seconds)."""
    m = event.message
    ts = getattr(m, "timestamp", None)
    return Meta(m.topic, m.partition, m.offset, None if ts is None else float(ts) * 1000.0)


class StagedTable(MutableMapping[bytes, bytes]):
    """A table whose writes wait in memory until ``commit``: reads see them at once.

    The user agent stages a micro-batch's snapshots and writes them to the faust table only
    after the outputs of the previous batch are delivered (see ``register_agents``). Set
    ``partition`` to the partition of the record being handled before writing: a faust table
    writes each key to the changelog partition of the record that changed it.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.staged: dict[bytes, tuple[bytes, int]] = {}
        self.partition = 0
        self.sending: list[Any] = []  # futures of the changelog records of the last commit

    def __getitem__(self, key: bytes) -> bytes:
        if key in self.staged:
            return self.staged[key][0]
        return self.table[key]

    def get(self, key: bytes, default: Any = None) -> Any:
        if key in self.staged:
            return self.staged[key][0]
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.staged[key] = (value, self.partition)

    def __delitem__(self, key: bytes) -> None:
        raise NotImplementedError("snapshots are overwritten, never deleted")

    def __iter__(self) -> Iterator[bytes]:
        return iter({**dict.fromkeys(self.table), **dict.fromkeys(self.staged)})

    def __len__(self) -> int:
        return len(set(self.table) | set(self.staged))

    def commit(self) -> int:
        """Write the staged snapshots to the table; returns how many."""
        n = len(self.staged)
        send_changelog = getattr(self.table, "send_changelog", None)
        for k, (v, partition) in self.staged.items():
            if send_changelog is None:
                self.table[k] = v
            else:
                # faust's ``table[k] = v`` takes the partition from the current event, which
                # after a micro-batch is not the event that changed this key
                self.table.data[k] = v  # type: ignore[attr-defined]
                self.sending.append(send_changelog(partition, k, v))
        self.staged.clear()
        return n

    async def written(self) -> None:
        """Wait until the changelog records of the last ``commit`` are delivered.

        A faust table queues them in the producer's own buffer, which ``producer.flush``
        drains only while a record leaves it every 0.1 s: under load it returns with the
        snapshots still queued, and outputs sent next could reach the broker before them.
        Each record's future resolves once the broker has it (and raises if it never will).
        """
        sending, self.sending = self.sending, []
        for fut in sending:
            await fut


class Backoff:
    """Exponential backoff for a call into a dependency that may be down or slow.

    The caller awaits ``run``, which retries until the call succeeds, so a stream that awaits
    it stops taking records meanwhile (backpressure) instead of dropping them. Each failure is
    logged and counted in ``counts[counter]``; the wait doubles from ``initial_s`` up to
    ``max_s``.
    """

    def __init__(
        self,
        counts: dict[str, int],
        initial_s: float = 0.1,
        max_s: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.counts = counts
        self.initial_s = initial_s
        self.max_s = max_s
        self.sleep = sleep

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        what: str,
        counter: str,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> T:
        delay = self.initial_s
        attempt = 0
        while True:
            try:
                result = await call()
            except retry_on as exc:
                attempt += 1
                self.counts[counter] = self.counts.get(counter, 0) + 1
                log.warning(
                    "%s failed (attempt %d), retrying in %.2f s: %s", what, attempt, delay, exc
                )
                await self.sleep(delay)
                delay = min(delay * 2, self.max_s)
                continue
            if attempt:
                log.warning("%s succeeded after %d failed attempts", what, attempt)
            return result


def _visuals(
    loop: asyncio.AbstractEventLoop, adapter: EngineAdapter, videos: list[VideoPublished]
) -> Awaitable[dict[int, Any]]:
    """Start reading the batch's thumbnails in a thread now; awaited, ``id(video)`` ->
    descriptor for those that arrived. The reader never takes more than its timeout; the
    wait here is bounded as well (a second, looser deadline), so nothing can hold up the
    batch's text vectors for longer."""
    if adapter.thumbnails is None:
        return asyncio.sleep(0, result={})
    fut = loop.run_in_executor(None, adapter.read_visuals, videos)
    deadline = loop.time() + adapter.thumbnails.settings.timeout_s + 1.0

    async def wait() -> dict[int, Any]:
        try:
            got = await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - loop.time()))
        except Exception as exc:  # a thumbnail is an extra: the videos go on without one
            log.warning("thumbnails of %d videos not read: %r", len(videos), exc)
            return {}
        return {id(v): g for v, g in zip(videos, got, strict=True) if g is not None}

    return asyncio.ensure_future(wait())


def register_agents(
    app: Any,
    adapter: EngineAdapter,
    channels: dict[str, Any],
    table: MutableMapping[bytes, bytes] | None,
    *,
    names: Collection[str] = AGENTS,
    video_batch: int = 256,
    video_within_s: float = 0.05,
    event_batch: int = 100,
    event_within_s: float = 0.005,
    executor: Executor | None = None,
    ready: asyncio.Event | None = None,
    flush: Callable[[], Awaitable[None]] | None = None,
    backoff: Backoff | None = None,
    send: Callable[[Out], Awaitable[Any]] | None = None,
    metrics: Any = None,
) -> dict[str, Any]:
    """Define the worker's agents on ``app``; returns them by name.

    Parameters
    ----------
    channels
        faust topics by stage name: ``videos`` and ``user-events`` (read), and
        ``recommendations``, ``item-deltas``, ``video-vectors``, ``dead-letters`` (written).
    table
        The users table (user id -> snapshot), changelogged by faust; None when ``names``
        leaves out the user agent.
    names
        The agents to define: both by default; an embed-only or events-only worker (``vidrec
        worker --role``) defines one, so embedding runs in its own process.
    event_batch, event_within_s
        Micro-batch of user events: at most this many, waiting at most this long for more.
    executor
        Where the encoder runs, so a batch of transformer inference never blocks the event loop.
    ready
        The user agent waits for it before its first event (set once replication has caught up
        with the item state that existed when the worker started).
    flush
        Waits until every record produced so far is acknowledged (the app's producer flush).
    backoff
        How the embed agent retries a failing encoder.
    send
        Hands one record to the producer (awaiting its place in the producer's queue, not
        its delivery: ``flush`` waits for that). By default ``channel.send`` of its stage;
        a worker sends straight to its producer (``streams.worker.app.direct_send``).
    metrics
        A ``streams.worker.metrics.WorkerMetrics`` told about each micro-batch once its
        outputs are sent (list latencies, dead letters, offsets handled); None: no metrics.

    Notes
    -----
    Order of a micro-batch of user events, which is what makes a crash at any instant lose
    nothing and count nothing twice (faust commits an offset only after flushing the producer,
    but the users table's changelog records and the agent's outputs are separate records that
    the broker can receive in any order):

    1. the engine handles the batch's events (``adapter.on_user_records``: one engine call that
       learns each event in order and ranks the batch's users together); snapshots (each with
       its events' outputs) are staged;
    2. flush: the previous batch's outputs are delivered, so its outboxes may be replaced;
    3. the snapshots go to the table, and the agent waits until the broker has them;
    4. the outputs are sent.

    A crash before 3 completes: the events were not counted, and they are redelivered (the
    offsets are committed only after a flush that follows the agent's progress). A crash after
    3: they are duplicates on redelivery, and their outboxes send the outputs again (lists
    identical to the first ones; deltas applied once per worker by event id).

    faust's ``processing_guarantee="exactly_once"`` would put table, outputs and offsets in one
    transaction instead; it is not used (DESIGN: its open issues show duplicates and fencing
    crashes), and the flushes above cost two broker round trips per batch, not per event.
    """

    async def channel_send(o: Out) -> Any:
        return await channels[o.stage].send(key=o.key, value=o.value, headers=o.headers or None)

    send_one = send or channel_send

    async def send_all(outs: Iterable[Out]) -> None:
        for o in outs:
            await send_one(o)

    async def flush_all() -> None:
        if flush is not None:
            await flush()

    staged = StagedTable(table if table is not None else {})

    def at_partition(meta: Meta) -> None:
        staged.partition = meta.partition

    async def learn_and_recommend(stream: Any) -> None:
        if ready is not None:
            await ready.wait()
        async for events in stream.take_events(event_batch, within=event_within_s):
            adapter.begin_batch()
            try:
                records = [(e.key, e.value, meta_of(e)) for e in events]
                outs = adapter.on_user_records(records, staged, at_partition)
            finally:
                adapter.end_batch()
            await flush_all()
            if flush is not None:
                adapter.delivered()
            if staged.commit() and flush is not None:
                await flush()
                await staged.written()
            await send_all(outs)
            if metrics is not None:
                metrics.after_user_batch(records, outs, USER_EVENTS)

    retry = backoff or Backoff(adapter.counts)

    async def embed(stream: Any) -> None:
        loop = asyncio.get_running_loop()
        async for events in stream.take_events(video_batch, within=video_within_s):
            records = [(e.key, e.value, meta_of(e)) for e in events]
            videos, bad = adapter.decode_videos(records)
            await send_all(bad)
            if videos:
                # thumbnails are fetched while the text is encoded; the fetch keeps its own
                # deadline, so a stalled one delays the batch by at most its timeout
                fetching = _visuals(loop, adapter, videos)

                async def encode(videos: list[VideoPublished] = videos) -> Any:
                    return await loop.run_in_executor(executor, adapter.encode_or_isolate, videos)

                good, vectors, poison = await retry.run(
                    encode, f"encoding {len(videos)} videos", "encode_retries"
                )
                visual = await fetching
                visuals = [visual.get(id(v)) for v in good]
                poisoned = adapter.poison_letters(records, poison)
                await send_all(poisoned)
                await send_all(adapter.video_vector_outs(good, vectors, visuals))
                bad = bad + poisoned
            if metrics is not None:
                metrics.after_video_batch(records, bad, VIDEOS)

    unknown = set(names) - set(AGENTS)
    if unknown or not names:
        raise ValueError(f"agents must be some of {AGENTS}, not {sorted(names)}")
    if LEARN in names and table is None:
        raise ValueError("the learn-and-recommend agent needs the users table")
    defined = {}
    if LEARN in names:
        defined[LEARN] = app.agent(channels[USER_EVENTS], name=LEARN)(learn_and_recommend)
    if EMBED in names:
        defined[EMBED] = app.agent(channels[VIDEOS], name=EMBED)(embed)
    return defined
