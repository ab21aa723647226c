"""``vidrec bench --only serve``: the HTTP API under load, and how soon a new list is visible.

On loopback, against a ``vidrec serve`` subprocess reading a throwaway topic prefix on the
broker of ``VIDREC_KAFKA_*``: fill the topics (users' lists of 20 items, videos with metadata
and content vectors, some item deltas for trending), wait for ``/readyz``, then

- an open-loop load generator (a lean keep-alive HTTP/1.1 client, ``_Pool``) sends
  ``GET /users/{id}/recommendations`` with filters, the cap per creator and diversity, at a
  fixed rate for a bounded time; a request's latency is counted from when it was *due*, so a
  server that falls behind cannot hide it (no coordinated omission);
- new lists are produced at a fixed rate, a sample of them polled every 5 ms until the API
  returns it: publication (the record's Kafka timestamp) -> visible, beside the server's own
  histogram of every list (Kafka timestamp -> applied in the store, i.e. visible to the next
  request);
- the dashboard (``/``) opened in Debian's headless Chromium (selenium, when both are
  installed) while worker stats records arrive on the ``stats`` topic as a worker sends them:
  the page's load time and the time until its first live figures are drawn.

The load generator runs in this process and shares the machine's cores with the server and
the broker, so the figures are an upper bound of what a dedicated server would show.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from schemas import Recommendations, VideoPublished, utcnow
from schemas.messages import recommended_items
from schemas.wire import ItemDeltas, encode_item_deltas, encode_video_vector
from streams.bench.report import Row
from streams.wire.clients import make_producer
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, create_topics, delete_prefix

TARGET_P99_MS = 10.0
TARGET_VISIBLE_P99_MS = 100.0
TARGET_DASHBOARD_MS = 2000.0
POLL_EVERY = 5  # lists polled through the API: one in this many (the server times them all)
FILTERS = {
    "k": "10",
    "exclude_categories": "c1,c2",
    "max_per_creator": "2",
    "diversity": "0.3",
}


@dataclass
class ServeBench:
    users: int = 10_000
    videos: int = 10_000
    rate: float = 1000.0
    seconds: float = 10.0
    list_rate: float = 100.0
    list_seconds: float = 10.0
    dim: int = 384
    items: int = 20


def _list(user: str, ids: list[str], event_id: str) -> bytes:
    n = len(ids)
    items = recommended_items(
        ids, [1.0 - i / (2 * n) for i in range(n)], [(0.4, 0.3, 0.2, 0.1)] * n
    )
    msg = Recommendations(
        user_id=user, items=items, trigger_event_id=event_id, generated_at=utcnow()
    )
    return msg.to_json()


def fill(kafka: KafkaSettings, topics: Topics, b: ServeBench, seed: int = 0) -> None:
    """The topics a server reads: videos with vectors, every user's list, trending deltas."""
    rng = np.random.default_rng(seed)
    producer = make_producer(kafka, linger_ms=20, batch_size=256 * 1024, acks=1)
    now = datetime.now(UTC)
    for i in range(b.videos):
        v = VideoPublished(
            video_id=f"v{i}",
            title=f"video {i}",
            category=f"c{i % 20}",
            language="en" if i % 3 else "fr",
            creator_id=f"k{i % 500}",
            published_at=now - timedelta(days=float(rng.uniform(0, 60))),
        )
        vec = rng.normal(size=b.dim).astype(np.float32)
        producer.send(topics.video_vectors, key=v.video_id.encode(),
                      value=encode_video_vector(v, vec, "bench", "bench"))  # fmt: skip
    for u in range(b.users):
        ids = [f"v{j}" for j in rng.choice(b.videos, size=b.items, replace=False)]
        producer.send(topics.recommendations, key=f"u{u}".encode(),
                      value=_list(f"u{u}", ids, f"fill-{u}"))  # fmt: skip
    ts = time.time()
    for n in range(2000):
        a, c = rng.integers(0, min(b.videos, 300), size=2)
        d = ItemDeltas(cooc=[(f"v{a}", f"v{c}", 1.0, ts)], popularity=[(f"v{c}", 1.0, ts)], ts=ts)
        producer.send(topics.item_deltas, key=b"bench",
                      value=encode_item_deltas(d, "bench", f"d{n}", "bench"))  # fmt: skip
    producer.flush()
    producer.close()


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "serve", "--port", "0"],
            env={k: v for k, v in {**os.environ, **env}.items() if k != "VIDREC_SERVE_API_KEY"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        m = re.search(r"http://(\S+):(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"vidrec serve did not start: {line.strip()!r}")
        self.url = f"http://{m.group(1)}:{m.group(2)}"
        threading.Thread(target=lambda: self.proc.stderr.read(), daemon=True).start()  # type: ignore[union-attr]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(a: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(a), q)) if a else float("nan")


async def _wait_ready(session: Any, url: str, timeout_s: float = 300.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        try:
            async with session.get(f"{url}/readyz") as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


class _Pool:
    """Keep-alive HTTP/1.1 connections for fixed GETs: the load generator's client.

    aiohttp costs about as much CPU per request as the server itself (0.4 ms on the 2-core
    box), and the generator shares the cores with the server; this client reads a response by
    its Content-Length and nothing more (some 0.05 ms), so the cores go to the server.
    """

    def __init__(self, url: str, limit: int = 256) -> None:
        m = re.fullmatch(r"http://([^:/]+):(\d+)", url)
        assert m, url
        self.host, self.port = m.group(1), int(m.group(2))
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0
        self.limit = limit
        self.freed = asyncio.Event()

    async def get(self, target: bytes) -> int:
        """The status of ``GET target`` (the body is read and dropped).

        A kept connection the server has closed meanwhile (uvicorn closes one idle for 5 s) is
        dropped and the request sent again on a new one, as HTTP clients do.
        """
        while not self.idle and self.open >= self.limit:
            self.freed.clear()
            await self.freed.wait()
        if self.idle:
            try:
                return await self._send(*self.idle.pop(), target)
            except (OSError, asyncio.IncompleteReadError):
                pass  # stale: closed by the server while idle
        self.open += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.open -= 1
            self.freed.set()
            raise
        return await self._send(reader, writer, target)

    async def _send(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: bytes
    ) -> int:
        try:
            writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *([0-9]+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.open -= 1
            writer.close()
            self.freed.set()
            raise
        self.idle.append((reader, writer))
        self.freed.set()
        return int(head[9:12])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _load(url: str, b: ServeBench, params: dict[str, str]) -> tuple[list[float], int, float]:
    """Open loop: request i is due at ``t0 + i / rate``; latency counts from then."""
    from urllib.parse import urlencode

    n = int(b.rate * b.seconds)
    rnd = random.Random(1)
    query = ("?" + urlencode(params)) if params else ""
    targets = [f"/users/u{rnd.randrange(b.users)}/recommendations{query}".encode()
               for _ in range(n)]  # fmt: skip
    lat: list[float] = []
    errors = 0
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    pool = _Pool(url)
    kinds: Counter[str] = Counter()

    async def one(target: bytes, due: float) -> None:
        nonlocal errors
        try:
            status = await pool.get(target)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            errors += 1
            kinds[type(exc).__name__] += 1
            return
        if status != 200:
            errors += 1
            kinds[f"HTTP {status}"] += 1
            return
        lat.append((clock() - due) * 1000.0)

    # The load generator's own garbage collection would be charged to the server: a full pass
    # over its tens of thousands of task and latency objects stalls it for 50-75 ms, and every
    # request due meanwhile counts as late (side by side, 6 runs each: max latency 55-76 ms
    # with it, 17-24 ms without). The run is bounded, so it goes without, and collects after.
    gc.collect()
    gc.disable()
    try:
        t0 = clock() + 0.05
        tasks = []
        for i, target in enumerate(targets):
            due = t0 + i / b.rate
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(target, due)))
        await asyncio.wait(tasks, timeout=b.seconds + 10.0)
    finally:
        gc.enable()
    elapsed = clock() - t0
    pool.close()
    if kinds:
        print(f"  serve: errors: {dict(kinds)}", file=sys.stderr)
    return lat, errors, len(lat) / elapsed if elapsed > 0 else 0.0


async def _visible(
    session: Any, url: str, kafka: KafkaSettings, topics: Topics, b: ServeBench
) -> tuple[list[float], int]:
    """New lists at ``list_rate``; one in ``POLL_EVERY`` polled every 5 ms until the API
    shows it (the server's histogram covers every list)."""
    from aiokafka import AIOKafkaProducer

    from streams.wire.settings import aiokafka_kwargs

    producer = AIOKafkaProducer(**aiokafka_kwargs(kafka), acks=1, linger_ms=0)
    await producer.start()
    rnd = random.Random(2)
    n = int(b.list_rate * b.list_seconds)
    # each new list for a user of its own: a second one for the same user could replace the
    # first before a poll sees it
    fresh = rnd.sample(range(b.users), min(n, b.users))
    out: list[float] = []
    missed = 0
    loop = asyncio.get_running_loop()

    async def poll(user: str, event_id: str, ts_ms: int) -> None:
        nonlocal missed
        deadline = loop.time() + 5.0
        while loop.time() < deadline:
            async with session.get(f"{url}/users/{user}/recommendations") as r:
                body = await r.read()
            if event_id.encode() in body:
                out.append(time.time() * 1000.0 - ts_ms)
                return
            await asyncio.sleep(0.005)
        missed += 1

    polls = []
    t0 = loop.time()
    try:
        for i in range(n):
            due = t0 + i / b.list_rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            u = f"u{fresh[i % len(fresh)]}"
            eid = f"new-{uuid.uuid4().hex[:8]}"
            ids = [f"v{rnd.randrange(b.videos)}" for _ in range(b.items)]
            ts_ms = int(time.time() * 1000)
            fut = await producer.send(
                topics.recommendations, _list(u, ids, eid), key=u.encode(), timestamp_ms=ts_ms
            )
            if i % POLL_EVERY == 0:  # a sample: polling every list would load the server
                polls.append(asyncio.create_task(poll(u, eid, ts_ms)))
            del fut
        await asyncio.wait(polls, timeout=10.0)
    finally:
        await producer.stop()
    return out, missed


def _hist_p99_ms(text: str, name: str) -> float | None:
    """The 99th percentile's bucket bound of a Prometheus histogram (an upper bound)."""
    from prometheus_client.parser import text_string_to_metric_families

    for fam in text_string_to_metric_families(text):
        if fam.name != name:
            continue
        buckets = [(float(s.labels["le"]), s.value) for s in fam.samples
                   if s.name.endswith("_bucket")]  # fmt: skip
        total = buckets[-1][1] if buckets else 0
        for le, c in buckets:
            if total and c >= 0.99 * total:
                return le * 1000.0
    return None


async def _measure(
    url: str, pid: int, kafka: KafkaSettings, topics: Topics, b: ServeBench
) -> list[Row]:
    import aiohttp

    conn = aiohttp.TCPConnector(limit=200, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=conn) as session:
        ready_s = await _wait_ready(session, url)
        what = f"{b.users:,} lists of {b.items}, {b.videos:,} videos with vectors"
        rows = [Row("serve", "serve: store caught up (/readyz 200)", f"{ready_s:.1f} s", what)]
        await _load(url, ServeBench(rate=200, seconds=1, users=b.users), FILTERS)  # warm-up
        for label, params in (("no filters", {"k": "10"}), ("with filters", FILTERS)):
            cpu0, own0 = _cpu_s(pid), time.process_time()
            lat, errors, achieved = await _load(url, b, params)
            cpu1, own1 = _cpu_s(pid), time.process_time()
            p50, p99 = _pct(lat, 50), _pct(lat, 99)
            cpu = ""
            if cpu0 is not None and cpu1 is not None and lat:
                cpu = (f"; server CPU {(cpu1 - cpu0) / len(lat) * 1000:.2f} ms/request, load "
                       f"generator {(own1 - own0) / len(lat) * 1000:.2f}")  # fmt: skip
            rows.append(
                Row(
                    "serve",
                    f"serve: GET recommendations {label}, p50 / p99",
                    f"{p50:.1f} / {p99:.1f} ms at {achieved:,.0f} req/s ({errors} errors){cpu}",
                    f"open loop {b.rate:,.0f} req/s for {b.seconds:.0f} s, "
                    + ("&".join(f"{k}={v}" for k, v in params.items())),
                    f"p99 <= {TARGET_P99_MS:.0f} ms at 1,000 req/s" if params is FILTERS else "",
                    (p99 <= TARGET_P99_MS and errors == 0 and achieved >= 950)
                    if params is FILTERS and b.rate >= 1000
                    else None,
                )
            )
        vis, missed = await _visible(session, url, kafka, topics, b)
        async with session.get(f"{url}/metrics") as r:
            server_p99 = _hist_p99_ms(await r.text(), "vidrec_serve_list_visible_seconds")
        p99 = _pct(vis, 99)
        rows.append(
            Row(
                "serve",
                "serve: list published -> visible in the API, p50 / p99",
                f"{_pct(vis, 50):.1f} / {p99:.1f} ms ({missed} not seen in 5 s); "
                f"server's histogram p99 <= {server_p99 if server_p99 is not None else '?'} ms",
                f"{b.list_rate:.0f} new lists/s for {b.list_seconds:.0f} s, 1 in {POLL_EVERY} "
                "polled every 5 ms",
                f"p99 <= {TARGET_VISIBLE_P99_MS:.0f} ms",
                p99 <= TARGET_VISIBLE_P99_MS and missed == 0,
            )
        )
        rows.append(await asyncio.to_thread(_dashboard, url, kafka, topics))
    return rows


def _dashboard(url: str, kafka: KafkaSettings, topics: Topics) -> Row:
    """Open the page in headless Chromium while stats records flow; a row with its timings."""
    import shutil

    from schemas.wire import WorkerStats

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    what = "headless Chromium, a cold page, worker stats records every 0.5 s"
    target = f"loaded and live < {TARGET_DASHBOARD_MS / 1000:.0f} s"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not (chromium and driver_path):
        why = "skipped: needs chromium, chromedriver and selenium"
        return Row("serve", "serve: dashboard in a browser", why, what, target, None)
    stop = threading.Event()

    def stats() -> None:  # what a worker at 500 events/s would send
        producer = make_producer(kafka)
        t0, n = time.time(), 0
        while not stop.is_set():
            n += 1
            rec = WorkerStats(worker_id="bench:1", at=time.time(), started_at=t0, events=250 * n,
                              lists=250 * n, latency_p50_ms=12.0, latency_p99_ms=40.0,
                              hr10=0.2, ndcg10=0.1, quality_window=1000)  # fmt: skip
            producer.send(topics.stats, key=b"bench:1", value=rec.to_json())
            producer.flush()
            stop.wait(0.5)
        producer.close()

    feeder = threading.Thread(target=stats, daemon=True)
    feeder.start()
    time.sleep(1.5)  # two records: the server has a rate to draw
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        t0 = time.perf_counter()
        driver.get(url + "/")
        live_ms = None
        while time.perf_counter() - t0 < 20:
            if driver.execute_script(
                "const d = window.vidrecDash, s = ((d || {}).last || {}).series || [];"
                "return s.length > 0 && s[s.length - 1].events_per_s > 0;"
            ):
                live_ms = (time.perf_counter() - t0) * 1000
                break
            time.sleep(0.02)
        load_ms = driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
    finally:
        driver.quit()
        stop.set()
        feeder.join(timeout=10)
    got = f"loaded in {load_ms:.0f} ms, " + (
        f"live figures drawn after {live_ms:.0f} ms" if live_ms is not None else "no live figures"
    )
    ok = live_ms is not None and live_ms <= TARGET_DASHBOARD_MS and load_ms <= TARGET_DASHBOARD_MS
    return Row("serve", "serve: dashboard in a browser", got, what, target, ok)


def bench_serve(b: ServeBench) -> list[Row]:
    """Run the section on a throwaway prefix (deleted after); rows as ``vidrec bench`` prints."""
    kafka = KafkaSettings()
    prefix = f"bench-serve-{uuid.uuid4().hex[:8]}"
    topics = Topics(TopicSettings(prefix=prefix, partitions=2, internal_partitions=2))
    create_topics(kafka, topics)
    server = None
    try:
        t0 = time.perf_counter()
        fill(kafka, topics, b)
        print(f"  serve: filled the topics in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        server = _Server(
            {
                "VIDREC_TOPIC_PREFIX": prefix,
                "VIDREC_TOPIC_PARTITIONS": "2",
                "VIDREC_TOPIC_INTERNAL_PARTITIONS": "2",
            }
        )
        runner: Any = asyncio.run
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            pass
        return runner(_measure(server.url, server.proc.pid, kafka, topics, b))
    finally:
        if server is not None:
            server.stop()
        delete_prefix(kafka, prefix)
