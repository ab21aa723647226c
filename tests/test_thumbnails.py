"""Thumbnails (issue 16): real image files made here, read from disk and from loopback servers
(one that serves, one that accepts and never answers); the descriptor; the engine's visual
feature; the wire; the embedded run and the embed agent."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from test_engine import T0, video

from schemas import UserEvent, VideoPublished
from schemas.wire import (
    VIDEO_VECTORS,
    decode_video_record,
    decode_video_vector,
    encode_video_vector,
)
from workers.adapter import EngineAdapter
from workers.engine import Engine
from workers.inprocess import drive
from workers.ranker import FEATURES
from workers.settings import ThumbnailSettings, load_settings
from workers.thumbnails import VISUAL_DIM, ThumbnailError, ThumbnailReader, describe_bytes

VISUAL = FEATURES.index("visual")
# Slack over the fetch timeout for the correctness bounds below (a busy 2-core CI machine):
# a stalled thumbnail must not hold a video for anything near a socket's default timeout.
SLACK_S = 3.0


# -- images ---------------------------------------------------------------------------------------
def picture(colour: tuple[int, int, int], vertical: bool, size=(480, 360), seed: int = 0):
    """Stripes of ``colour`` on white, with a little noise: a stand-in for a thumbnail."""
    w, h = size
    img = np.full((h, w, 3), 255, dtype=np.float32)
    band = (np.arange(w) // (w // 8) % 2 == 0)[None, :] if vertical else None
    if band is None:
        band = (np.arange(h) // (h // 8) % 2 == 0)[:, None]
    mask = np.broadcast_to(band, (h, w))
    img[mask] = colour
    img += np.random.default_rng(seed).normal(0, 8, size=img.shape)
    from PIL import Image

    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encoded(img, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


RED = (220, 30, 30)
BLUE = (30, 40, 200)


def red(seed: int = 0, fmt: str = "JPEG", size=(480, 360)) -> bytes:
    return encoded(picture(RED, True, size, seed), fmt)


def blue(seed: int = 0, fmt: str = "JPEG", size=(480, 360)) -> bytes:
    return encoded(picture(BLUE, False, size, seed), fmt)


def noise_png(side: int) -> bytes:
    """Incompressible pixels: a PNG about 3 bytes a pixel."""
    from PIL import Image

    px = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encoded(Image.fromarray(px), "PNG")


# -- loopback servers -----------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        srv.hits.append(self.path)  # type: ignore[attr-defined]
        body = srv.files.get(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if not self.path.startswith("/nolength/"):  # else: the body runs until the close
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    """(base URL, path -> bytes served, paths asked for) of a loopback HTTP server."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {}  # type: ignore[attr-defined]
    srv.hits = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv.files, srv.hits  # type: ignore[attr-defined]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def stalled() -> Iterator[str]:
    """Base URL of a server that accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    sock.close()


def reader(**kw: object) -> ThumbnailReader:
    return ThumbnailReader(ThumbnailSettings(**kw))


# -- settings ----------------------------------------------------------------------------------
def test_thumbnail_settings_come_from_a_settings_file_and_the_environment(tmp_path, monkeypatch):
    from workers.settings import SettingsFileError, write_settings_file

    f = tmp_path / "s.json"
    write_settings_file(f, thumbnails={"timeout_s": 0.5, "threads": 3})
    s = load_settings(f)
    assert (s.thumbnails.timeout_s, s.thumbnails.threads, s.thumbnails.enabled) == (0.5, 3, True)
    monkeypatch.setenv("VIDREC_THUMBNAILS_TIMEOUT_S", "1.5")
    monkeypatch.setenv("VIDREC_THUMBNAILS_ENABLED", "false")
    s = load_settings(f)
    assert (s.thumbnails.timeout_s, s.thumbnails.threads, s.thumbnails.enabled) == (1.5, 3, False)
    assert load_settings(f, thumbnails={"timeout_s": 0.25}).thumbnails.timeout_s == 0.25
    f.write_text('{"thumbnails": {"timeout": 3}}')
    with pytest.raises(SettingsFileError, match="thumbnails.timeout: unknown setting"):
        load_settings(f)


# -- the descriptor -------------------------------------------------------------------------------
def test_descriptor_is_unit_norm_and_puts_alike_images_closer():
    a = describe_bytes(red(0))
    a2 = describe_bytes(red(7, "PNG", size=(1280, 720)))  # same look, other noise, size, format
    b = describe_bytes(blue(0))
    for d in (a, a2, b):
        assert d.shape == (VISUAL_DIM,) and d.dtype == np.float32
        assert abs(float(np.linalg.norm(d)) - 1.0) < 1e-5
    assert float(a @ a2) > float(a @ b) + 0.2, (float(a @ a2), float(a @ b))
    # colour alone separates too: the same stripes in red and in blue
    blue_vertical = describe_bytes(encoded(picture(BLUE, True)))
    assert float(a @ a2) > float(a @ blue_vertical) + 0.1


_SEEDS = (red(9), encoded(picture(BLUE, False), "PNG"), encoded(picture(RED, True), "GIF"))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2), st.integers(0, 4000), st.binary(max_size=64), st.integers(0, 100))
def test_any_bytes_give_a_unit_descriptor_or_a_thumbnail_error(which, cut, junk, at):
    """Truncated or corrupted image files: a descriptor or ThumbnailError, nothing else."""
    data = bytearray(_SEEDS[which][: max(cut, 1)])
    pos = min(at, len(data))
    data[pos : pos + len(junk)] = junk
    try:
        d = describe_bytes(bytes(data))
    except ThumbnailError as exc:
        assert exc.outcome in ("failed", "too_large")
        return
    assert d.shape == (VISUAL_DIM,) and abs(float(np.linalg.norm(d)) - 1.0) < 1e-4


# -- the reader -----------------------------------------------------------------------------------
def test_reads_local_paths_file_urls_and_http(tmp_path: Path, server):
    base, files, _ = server
    data = red(1)
    path = tmp_path / "thumb one.jpg"
    path.write_bytes(data)
    files["/t/1.jpg"] = data
    with reader() as r:
        got = r.read_many([str(path), path.as_uri(), f"{base}/t/1.jpg", None, ""])
        assert r.counts["ok"] == 3 and r.counts["missing"] == 2
    want = describe_bytes(data)
    for g in got[:3]:
        assert g is not None
        np.testing.assert_allclose(g, want, atol=1e-6)
    assert got[3] is None and got[4] is None


def test_broken_huge_and_unknown_thumbnails_cost_only_their_descriptor(
    tmp_path: Path, server, caplog: pytest.LogCaptureFixture
):
    """Each bad kind is counted per video, logged once, and never raises; good ones in the
    same batch still come back."""
    base, files, _ = server
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image at all" * 10)
    big = noise_png(400)  # about 480 kB
    (tmp_path / "big.png").write_bytes(big)
    files["/big.png"] = big
    files["/nolength/big.png"] = big  # no Content-Length: the cap stops the stream
    files["/broken.jpg"] = broken.read_bytes()
    files["/good.jpg"] = red(2)
    files["/truncated.jpg"] = red(3)[:2000]
    huge_pixels = encoded(picture(RED, True, size=(2000, 1500)))  # few bytes, many pixels
    files["/pixels.jpg"] = huge_pixels
    urls = [
        str(broken),
        f"{base}/broken.jpg",
        f"{base}/truncated.jpg",
        str(tmp_path / "absent.jpg"),
        f"{base}/absent.jpg",  # 404
        "ftp://example.org/x.jpg",
        str(tmp_path / "big.png"),
        f"{base}/big.png",
        f"{base}/nolength/big.png",
        f"{base}/pixels.jpg",
        f"{base}/good.jpg",
    ]
    with caplog.at_level(logging.INFO, logger="workers.thumbnails"):
        with reader(max_bytes=100_000, max_pixels=1_000_000, cache_size=0) as r:
            got = r.read_many(urls)
            again = r.read_many(urls)  # a second batch: counted again, not logged again
            counts = dict(r.counts)
    assert [g is None for g in got] == [True] * 10 + [False]
    assert [g is None for g in again] == [g is None for g in got]
    assert counts["failed"] == 2 * 6 and counts["too_large"] == 2 * 4 and counts["ok"] == 2
    said = [rec.getMessage() for rec in caplog.records]
    assert sum("failed" in m for m in said) == 1 and sum("too_large" in m for m in said) == 1
    assert all("http" in m or "/" in m for m in said)  # each names an example


def test_a_stalled_server_costs_the_batch_at_most_the_timeout(server, stalled, caplog):
    base, files, _ = server
    files["/good.jpg"] = blue(3)
    urls = [f"{stalled}/a.jpg", f"{base}/good.jpg", f"{stalled}/b.jpg", f"{stalled}/c.jpg"]
    describe_bytes(blue(9))  # the first descriptor of a process is not timed by the deadline
    with caplog.at_level(logging.WARNING, logger="workers.thumbnails"):
        # a deadline the good thumbnail meets on a busy CI machine; the stalled ones miss any
        with reader(timeout_s=2.0, breaker_failures=10) as r:
            t0 = time.monotonic()
            got = r.read_many(urls)
            took = time.monotonic() - t0
            assert r.counts["timeout"] == 3 and r.counts["ok"] == 1
    assert took < 2.0 + SLACK_S, took
    assert [g is None for g in got] == [True, False, True, True]
    assert sum("timeout" in rec.getMessage() for rec in caplog.records) == 1


def test_a_failing_host_is_skipped_after_a_few_failures(server):
    """Connection refused on a closed port: a few fetches fail, the rest of the host's
    thumbnails are skipped without a connection attempt, and another host is unaffected."""
    base, files, hits = server
    files["/ok.jpg"] = red(4)
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    urls = [f"{dead}/{i}.jpg" for i in range(40)]
    with reader(threads=2, breaker_failures=2, breaker_s=60.0) as r:
        r.read_many(urls[:20])
        first = dict(r.counts)
        r.read_many(urls[20:] + [f"{base}/ok.jpg"])
        second = dict(r.counts)
    # a fetch already running when the breaker opens may still fail: at most one per thread
    assert 2 <= first["failed"] <= 2 + 2 and first["skipped"] == 20 - first["failed"]
    assert second["failed"] == first["failed"] and second["skipped"] == first["skipped"] + 20
    assert second["ok"] == 1 and hits == ["/ok.jpg"]


def test_descriptors_are_cached_by_url(server):
    base, files, hits = server
    files["/x.jpg"] = red(5)
    with reader() as r:
        a = r.read(f"{base}/x.jpg")
        b = r.read(f"{base}/x.jpg")
    assert hits == ["/x.jpg"]
    assert a is not None and b is not None and np.array_equal(a, b)


# -- the engine -----------------------------------------------------------------------------------
def _visuals(n_red: int, n_blue: int) -> list[np.ndarray]:
    return [describe_bytes(red(100 + i)) for i in range(n_red)] + [
        describe_bytes(blue(200 + i)) for i in range(n_blue)
    ]


def test_the_engine_scores_items_by_the_users_visual_profile(make_engine):
    """A user who watched red-thumbnail videos: an unseen red one gets a higher visual column
    than a blue one, and a video without a thumbnail gets 0; the descriptors reach the index."""
    eng: Engine = make_engine()
    vids = [video(i, 0, T0 + timedelta(minutes=i)) for i in range(11)]
    vis: list[np.ndarray | None] = [*_visuals(5, 5), None]
    eng.on_videos(vids, visuals=vis)
    for j, i in enumerate((0, 1, 2)):
        eng.on_event(
            UserEvent(
                event_id=f"e{j}",
                user_id="u",
                video_id=f"v{i}",
                type="watch",
                ts=T0 + timedelta(hours=1, minutes=j),
            )
        )
    items = np.array([eng.catalog.get(v) for v in ("v3", "v7", "v10")])
    col = eng._features("u", eng.users["u"], items)[:, VISUAL]
    assert col[0] > col[1] + 0.1 and col[0] > 0.5, col
    assert col[2] == 0.0
    # a user without history, or with no thumbnail in it, has no visual profile: all zero
    assert not eng._features("nobody", None, items)[:, VISUAL].any()
    stored = eng.index.get_visuals(["v3", "v10"])
    assert set(stored) == {"v3"}
    np.testing.assert_allclose(stored["v3"], vis[3], atol=1e-5)
    # a redelivery without a thumbnail (this fetch timed out) keeps the descriptor it had
    eng.on_videos([vids[3]])
    assert eng.catalog.has_visual[items[0]] and set(eng.index.get_visuals(["v3"])) == {"v3"}


def test_visual_descriptors_survive_a_snapshot_and_old_snapshots_load(make_engine):
    eng: Engine = make_engine()
    vids = [video(i, 0, T0) for i in range(3)]
    eng.on_videos(vids, visuals=[*_visuals(1, 1), None])
    state = eng.to_state()
    back = Engine.from_state(state)
    assert back.catalog.has_visual[:3].tolist() == [True, True, False]
    np.testing.assert_allclose(back.catalog.visual_of(1), eng.catalog.visual_of(1), atol=1e-6)
    old = dict(state)
    old["catalog"] = {
        k: v
        for k, v in state["catalog"].items()
        if k not in ("has_visual", "visuals", "visual_dim")
    }
    assert not Engine.from_state(old).catalog.has_visual[:3].any()


def test_a_bad_descriptor_is_refused_by_the_engine(make_engine):
    eng: Engine = make_engine()
    with pytest.raises(ValueError, match="visual"):
        eng.on_videos([video(0, 0, T0)], visuals=[np.ones(VISUAL_DIM + 1)])
    with pytest.raises(ValueError, match="differ"):
        eng.on_videos([video(0, 0, T0)], visuals=[])


# -- the wire -------------------------------------------------------------------------------------
def test_video_vector_records_carry_the_visual_and_old_ones_still_decode(make_engine):
    v = video(1, 0, T0)
    vec = np.arange(4, dtype=np.float32)
    vis = _visuals(1, 0)[0]
    rec = decode_video_record(encode_video_vector(v, vec, "enc", "o", vis))
    assert rec.video == v and rec.encoder == "enc"
    np.testing.assert_array_equal(rec.vector, vec)
    np.testing.assert_array_equal(rec.visual, vis)
    old = encode_video_vector(v, vec, "enc", "o")
    assert b"visual" not in old and decode_video_record(old).visual is None
    video_, vec_, enc_ = decode_video_vector(old)  # the three-part form is unchanged
    assert video_ == v and enc_ == "enc" and np.array_equal(vec_, vec)

    # replicated to another worker: the visual arrives in its catalogue; a malformed one is
    # dropped and its video kept
    eng: Engine = make_engine()
    ad = EngineAdapter(eng)
    good = video(2, 0, T0)
    bad = video(3, 0, T0)
    values = [
        ad.video_vector_outs([good], eng.encoder.encode_many([good.text()]), [vis])[0].value,
        encode_video_vector(bad, eng.encoder.encode_many([bad.text()])[0], "", "x", np.ones(3)),
    ]
    assert ad.on_replicated(VIDEO_VECTORS, values) == 2
    assert eng.catalog.has_visual[eng.catalog.get("v2")]
    assert not eng.catalog.has_visual[eng.catalog.get("v3")]


# -- the embedded run -----------------------------------------------------------------------------
def _with_thumb(i: int, url: str | None) -> VideoPublished:
    return video(i, i % 3, T0 + timedelta(minutes=i)).model_copy(update={"thumbnail_url": url})


def test_the_embedded_run_reads_thumbnails_and_a_stalled_one_costs_only_its_visual(
    make_engine, tmp_path: Path, server, stalled
):
    base, files, _ = server
    files["/1.jpg"] = blue(1)
    local = tmp_path / "0.jpg"
    local.write_bytes(red(0))
    (tmp_path / "2.jpg").write_bytes(b"broken")
    urls = [str(local), f"{base}/1.jpg", str(tmp_path / "2.jpg"), f"{stalled}/3.jpg", None]
    vids = [_with_thumb(i, u) for i, u in enumerate(urls)]
    event = UserEvent(event_id="e", user_id="u", video_id="v0", type="play", ts=T0 + timedelta(1))
    eng: Engine = make_engine()
    describe_bytes(red(9))  # the first descriptor of a process is not timed by the deadline
    # a deadline the good thumbnails meet on a busy CI machine (a local file and a loopback
    # server); the stalled one misses any deadline
    with reader(timeout_s=3.0) as r:
        t0 = time.monotonic()
        stats = drive([*vids, event], eng, thumbnails=r)
        took = time.monotonic() - t0
        counts = dict(r.counts)
    assert took < 3.0 + SLACK_S + 5.0, took  # the run includes the engine's own work
    assert stats.videos == 5 and stats.published == 1
    idx = [eng.catalog.get(v.video_id) for v in vids]
    assert eng.catalog.has_content[idx].all()  # every video is indexed by its text
    assert eng.catalog.has_visual[idx].tolist() == [True, True, False, False, False]
    assert eng.index.count() == 5
    assert counts == {
        "ok": 2,
        "missing": 1,
        "failed": 1,
        "too_large": 0,
        "timeout": 1,
        "skipped": 0,
    }


# -- the embed agent ------------------------------------------------------------------------------
def test_the_embed_agent_ships_text_at_once_and_visuals_where_read(make_engine, server, stalled):
    """A stalled thumbnail delays its batch's video-vectors by at most the fetch timeout; the
    video goes out with its text vector alone, the others with their visual; counted."""
    from test_agents import _sent, record_sends

    from streams.wire.topics import Topics, TopicSettings
    from streams.worker.app import WorkerSettings, make_app

    base, files, _ = server
    files["/0.jpg"] = red(0)
    eng: Engine = make_engine()
    timeout = 0.5
    wa = make_app(
        WorkerSettings(status_interval_s=0, video_batch=2, video_within_s=5.0),
        topics=Topics(TopicSettings(prefix="thumb-test")),
        engine=eng,
        replicate=False,
        settings=load_settings(thumbnails={"timeout_s": timeout}),
    )
    sent = record_sends(wa)
    vids = [_with_thumb(0, f"{base}/0.jpg"), _with_thumb(1, f"{stalled}/1.jpg")]
    took: list[float] = []

    async def run() -> None:
        async with wa.agents["embed"].test_context() as agent:
            t0 = time.monotonic()
            for v in vids:
                await agent.put(key=v.video_id.encode(), value=v.to_json())
            for _ in range(2000):
                if sent[VIDEO_VECTORS].await_count == len(vids):
                    break
                await asyncio.sleep(0.005)
            took.append(time.monotonic() - t0)

    try:
        asyncio.run(run())
    finally:
        wa.close()
    shipped = [decode_video_record(s["value"]) for s in _sent(sent[VIDEO_VECTORS])]
    assert [r.video.video_id for r in shipped] == ["v0", "v1"]
    assert took[0] < timeout + SLACK_S, took
    assert shipped[0].visual is not None and shipped[1].visual is None
    np.testing.assert_allclose(shipped[0].visual, describe_bytes(red(0)), atol=1e-6)
    assert wa.adapter.counts["thumbnails_ok"] == 1
    assert wa.adapter.counts["thumbnails_timeout"] == 1
    assert wa.adapter.counts["videos_embedded"] == 2
    scraped = generate_latest(wa.metrics.registry).decode()
    assert 'vidrec_thumbnails_total{outcome="timeout"} 1.0' in scraped
    assert 'vidrec_thumbnails_total{outcome="ok"} 1.0' in scraped


# -- a worker on the real broker ---------------------------------------------------------------
@pytest.mark.kafka
def test_a_worker_on_the_broker_ships_visuals_and_never_waits_for_a_stalled_thumbnail(
    kafka_settings, prefix, server, stalled, tmp_path: Path
):
    """``vidrec worker`` as a subprocess, thumbnails on loopback: the good one arrives as a
    visual vector in ``video-vectors``, the stalled and broken ones cost only theirs, and no
    video waits for ever on a server that never answers."""
    from streams.wire.clients import Sender, consume, make_producer
    from streams.wire.topics import Topics, TopicSettings, create_topics
    from streams.worker.process import WorkerProcess, wait_until_serving

    base, files, hits = server
    files["/0.jpg"] = red(0)
    (tmp_path / "2.jpg").write_bytes(b"broken")
    timeout = 1.0
    topics = Topics(TopicSettings(prefix=prefix, partitions=2, internal_partitions=2))
    create_topics(kafka_settings, topics)
    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": "2",
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": "2",
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIDREC_ENCODER_MODEL_PATH": "hashing",
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
        "VIDREC_QDRANT_PATH": None,
        "QDRANT_URL": None,
        "VIDREC_THUMBNAILS_TIMEOUT_S": str(timeout),
    }
    worker = WorkerProcess(f"{prefix}-w0", env=env)
    try:
        wait_until_serving([worker], 2)
        urls = [f"{base}/0.jpg", f"{stalled}/1.jpg", str(tmp_path / "2.jpg")]
        vids = [_with_thumb(i, u) for i, u in enumerate(urls)]
        sender = Sender(make_producer(kafka_settings), topics)
        sent_ms = time.time() * 1000
        for v in vids:
            sender.send(v)
        sender.flush()
        sender.close()
        got = {}
        for rec in consume(kafka_settings, topics.video_vectors, from_beginning=True, timeout_s=60):
            r = decode_video_record(rec.value)
            got[r.video.video_id] = (r, rec.timestamp_ms - sent_ms)
            if len(got) == len(vids):
                break
    finally:
        worker.stop()
    assert sorted(got) == ["v0", "v1", "v2"]
    assert got["v0"][0].visual is not None and hits == ["/0.jpg"]
    np.testing.assert_allclose(got["v0"][0].visual, describe_bytes(red(0)), atol=1e-6)
    assert got["v1"][0].visual is None and got["v2"][0].visual is None
    print({vid: round(ms) for vid, (_, ms) in got.items()}, "ms from the send to video-vectors")
    # a correctness bound with a wide margin (a busy machine, the broker's round trips)
    assert max(ms for _, ms in got.values()) < (timeout + 10.0) * 1000, got
