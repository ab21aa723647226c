"""Store and search video content vectors in Qdrant: a server, qdrant-edge, or client local mode.

Point ids are ``uuid5(VIDEO_NAMESPACE, video_id)``, so re-delivering a video overwrites its point
instead of adding one, and every payload carries ``video_id`` (uuid5 cannot be inverted) and
``published_at`` as float epoch seconds (for freshness filters). A point holds the text vector
``content`` and, when its thumbnail could be read, the visual descriptor ``visual`` (issue 16; a
video without one stores the text vector alone).

``VideoIndex`` validates and shapes the data; a small backend object talks to the engine:
``_ClientBackend`` (qdrant-client: a server, or its pure-Python local mode) or ``_EdgeBackend``
(qdrant-edge, Qdrant's Rust engine embedded in the process).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException

from workers.settings import IndexSettings
from workers.thumbnails import VISUAL_DIM

if TYPE_CHECKING:
    import qdrant_edge

# Fixed for good: a new namespace would orphan every stored point.
VIDEO_NAMESPACE = uuid.UUID("8de831a1-b897-542d-ba22-d26a107a4d87")
CONTENT = "content"
VISUAL = "visual"
UPSERT_BATCH = 256
# qdrant-client backends only: up to this many excluded ids are dropped from an over-fetched
# result instead of a Qdrant filter: exact either way, and in local mode (which checks filters
# point by point in Python) 5x faster at 10k points. Larger sets go into a must_not HasIdCondition.
# The edge backend always filters natively (a hash lookup per candidate in Rust).
EXCLUDE_BY_OVERFETCH_MAX = 256
# Edge shards live in ``<path>/edge/<collection>``; qdrant-client local mode keeps a collection in
# ``<path>/collection/<collection>``. Both can share one ``path`` without touching each other.
EDGE_DIR = "edge"
LOCAL_DIR = "collection"
# Qdrant's full_scan_threshold is in KB of vectors: a filter that lets fewer points through than
# this much is answered by scanning them exactly (through the payload index) instead of walking
# the graph. 10,000 KB is about 6,700 384-d points, e.g. a week of fresh videos.
FULL_SCAN_KB = 10_000

BackendName = Literal["edge", "local", "server"]
Hits = list[tuple[str, float]]

_CLIENT_ERRORS = (ApiException, QdrantException, ValueError, RuntimeError, OSError)
log = logging.getLogger(__name__)
# a video's named vectors as a backend writes them: content always, visual when it has one
Named = dict[str, list[float]]


class VideoIndexError(RuntimeError):
    """A Qdrant call failed; ``__cause__`` holds the engine's own exception."""


@functools.lru_cache(maxsize=1 << 16)
def point_id(video_id: str) -> str:
    """The Qdrant point id of a video: deterministic, so upserts are idempotent.

    Cached because every search turns the user's seen list (up to ``history_len`` ids) into
    point ids again, and uuid5 costs about 5 us each.
    """
    return str(uuid.uuid5(VIDEO_NAMESPACE, video_id))


def edge_available() -> bool:
    """Whether the ``qdrant-edge-py`` package (module ``qdrant_edge``) is installed."""
    return importlib.util.find_spec("qdrant_edge") is not None


def resolve_backend(settings: IndexSettings) -> BackendName:
    """The backend ``settings`` selects; ``auto`` becomes a concrete choice here.

    ``auto`` is ``server`` when ``url`` is set, else ``edge`` when qdrant-edge is installed, else
    ``local``, with one exception: a ``path`` that already holds this collection in local mode
    (and no edge shard of it) stays ``local``, so installing qdrant-edge never hides stored data.
    """
    if settings.backend != "auto":
        return settings.backend
    if settings.url is not None:
        return "server"
    if settings.path is not None:
        root = Path(settings.path)
        has_local = (root / LOCAL_DIR / settings.collection).is_dir()
        if has_local and not (root / EDGE_DIR / settings.collection).is_dir():
            return "local"
    return "edge" if edge_available() else "local"


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("published_at must be timezone-aware")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"published_at must be epoch seconds or an aware datetime, not {value!r}")


class _Backend(Protocol):
    """What ``VideoIndex`` needs from a storage engine; inputs arrive validated.

    ``errors`` lists the exception types its calls raise for engine failures, which
    ``VideoIndex`` turns into ``VideoIndexError``.
    """

    errors: tuple[type[BaseException], ...]
    where: str
    visual: bool  # whether the collection has the "visual" vector (an older one may not)

    def upsert(self, ids: list[str], vectors: list[Named], payloads: list[dict[str, Any]]) -> None:
        """Write one batch of points (point ids, named vectors, full payloads)."""

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        exclude_ids: Sequence[frozenset[str]],
        min_published_at: float | None,
    ) -> list[Hits]:
        """Exact ``limit`` nearest per row, without its excluded video ids, best first."""

    def retrieve(self, ids: list[str], with_vectors: bool) -> list[tuple[dict[str, Any], Named]]:
        """(payload, named vectors: empty without ``with_vectors``) of the points present."""

    def count(self) -> int: ...

    def delete(self, ids: list[str]) -> None: ...

    def optimize(self) -> bool:
        """Build the HNSW graph over the points stored so far; whether anything was built."""

    @property
    def approximate(self) -> bool:
        """Whether searches may walk an HNSW graph (approximate) rather than scan exactly."""

    def close(self) -> None: ...


class _ClientBackend:
    """qdrant-client: a Qdrant server, or local mode (a folder, or memory when ``path`` is None).

    Local mode searches by brute force in Python/numpy, evaluates filters point by point in
    Python, ignores payload indexes, and locks its whole folder (one client per path).
    """

    errors = _CLIENT_ERRORS

    def __init__(self, settings: IndexSettings, dim: int, remote: bool, visual_dim: int) -> None:
        self.collection = settings.collection
        self.visual = visual_dim > 0
        self.remote = remote
        self._settings = settings
        self._params = (
            models.SearchParams(
                hnsw_ef=settings.hnsw_ef, acorn=models.AcornSearchParams(enable=True)
            )
            if remote and settings.hnsw_min_points is not None
            else None
        )
        if remote:
            if settings.url is None:
                raise ValueError("backend 'server' needs a url (QDRANT_URL)")
            key = settings.api_key.get_secret_value() if settings.api_key is not None else None
            self.where = settings.url
            self._client = QdrantClient(
                url=settings.url, api_key=key, timeout=math.ceil(settings.timeout_s)
            )
        elif settings.path is not None:
            self.where = settings.path
            self._client = QdrantClient(path=settings.path)
        else:
            self.where = ":memory:"
            self._client = QdrantClient(location=":memory:")
        try:
            self._ensure_collection(dim, visual_dim)
        except BaseException:
            self._client.close()
            raise

    def _ensure_collection(self, dim: int, visual_dim: int) -> None:
        if not self._client.collection_exists(self.collection):
            s = self._settings
            # A server indexes a segment in the background once it holds indexing_threshold KB
            # of vectors; hnsw_min_points unset keeps every segment plain (exact).
            kb = 0 if s.hnsw_min_points is None else max(1, s.hnsw_min_points * dim * 4 // 1024)
            config = {CONTENT: models.VectorParams(size=dim, distance=models.Distance.COSINE)}
            if visual_dim:
                config[VISUAL] = models.VectorParams(
                    size=visual_dim, distance=models.Distance.COSINE
                )
            self._client.create_collection(
                self.collection,
                vectors_config=config,
                hnsw_config=models.HnswConfigDiff(
                    m=s.hnsw_m, ef_construct=s.hnsw_ef_construct, full_scan_threshold=FULL_SCAN_KB
                ),
                optimizers_config=models.OptimizersConfigDiff(indexing_threshold=kb),
            )
            if self.remote:  # local mode ignores payload indexes and warns about them
                self._client.create_payload_index(
                    self.collection, "published_at", models.PayloadSchemaType.FLOAT
                )
        vectors = self._client.get_collection(self.collection).config.params.vectors
        params = vectors.get(CONTENT) if isinstance(vectors, Mapping) else None
        if params is None or params.size != dim or params.distance != models.Distance.COSINE:
            raise VideoIndexError(
                f"collection {self.collection!r} has vectors {vectors!r}, not a cosine "
                f"{CONTENT!r} vector of size {dim}: use another collection name or delete it"
            )
        if visual_dim:
            vis = vectors.get(VISUAL)
            self.visual = (
                vis is not None
                and vis.size == visual_dim
                and vis.distance == models.Distance.COSINE
            )
            if not self.visual:
                _no_visual(self.collection, f"vectors {sorted(vectors)}")

    def upsert(self, ids: list[str], vectors: list[Named], payloads: list[dict[str, Any]]) -> None:
        points = [
            models.PointStruct(id=pid, vector=vec, payload=payload)  # type: ignore[arg-type]
            for pid, vec, payload in zip(ids, vectors, payloads, strict=True)
        ]
        self._client.upsert(self.collection, points=points, wait=True)

    @staticmethod
    def _filter(in_filter: frozenset[str], min_published_at: float | None) -> models.Filter | None:
        must: list[models.Condition] = []
        must_not: list[models.Condition] = []
        if in_filter:
            must_not.append(models.HasIdCondition(has_id=[point_id(v) for v in in_filter]))
        if min_published_at is not None:
            must.append(
                models.FieldCondition(key="published_at", range=models.Range(gte=min_published_at))
            )
        if not must and not must_not:
            return None
        return models.Filter(must=must or None, must_not=must_not or None)

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        exclude_ids: Sequence[frozenset[str]],
        min_published_at: float | None,
    ) -> list[Hits]:
        # (dropped after an over-fetch, put into the filter): one of the two is empty.
        splits = [
            (ex, frozenset()) if len(ex) <= EXCLUDE_BY_OVERFETCH_MAX else (frozenset(), ex)
            for ex in exclude_ids
        ]
        requests = [
            models.QueryRequest(
                query=row.tolist(),
                using=CONTENT,
                filter=self._filter(in_filter, min_published_at),
                limit=limit + len(dropped),
                with_payload=["video_id"],
                params=self._params,
            )
            for row, (dropped, in_filter) in zip(vectors, splits, strict=True)
        ]
        if len(requests) == 1:
            r = requests[0]
            results = [
                self._client.query_points(
                    self.collection,
                    query=r.query,
                    using=CONTENT,
                    query_filter=r.filter,
                    limit=r.limit,
                    with_payload=["video_id"],
                    search_params=r.params,
                )
            ]
        else:
            results = self._client.query_batch_points(self.collection, requests=requests)
        out: list[Hits] = []
        for res, (dropped, _) in zip(results, splits, strict=True):
            hits = [(p.payload["video_id"], float(p.score)) for p in res.points if p.payload]
            out.append([h for h in hits if h[0] not in dropped][:limit])
        return out

    def retrieve(self, ids: list[str], with_vectors: bool) -> list[tuple[dict[str, Any], Named]]:
        names = [CONTENT, VISUAL] if self.visual else [CONTENT]
        records = self._client.retrieve(
            self.collection,
            ids=ids,
            with_payload=True,
            with_vectors=names if with_vectors else False,
        )
        return _payloads_and_vectors(records)

    def count(self) -> int:
        return self._client.count(self.collection, exact=True).count

    def delete(self, ids: list[str]) -> None:
        self._client.delete(
            self.collection, points_selector=models.PointIdsList(points=ids), wait=True
        )

    def optimize(self) -> bool:
        # A server builds its graph by itself; local mode has none (brute force in numpy).
        return False

    @property
    def approximate(self) -> bool:
        return self._params is not None

    def close(self) -> None:
        self._client.close()


class _EdgeBackend:
    """qdrant-edge: one Rust shard per collection in ``<path>/edge/<collection>``.

    Writes go through the shard's write-ahead log, so an upsert that returned survives a crash.
    Searches are exact (``SearchParams(exact=True)``, brute force over 384-d vectors: about 1 ms
    at 10k points and 10 ms at 100k) until ``optimize`` has built an HNSW graph, which it does
    only at ``hnsw_min_points`` or more. Edge never optimises by itself, and ``optimize`` holds
    the GIL for the whole build (minutes at 100k on 2 cores), so it belongs at a start or in an
    import, not beside live traffic. Points written after it go to a plain segment that every
    search scans exactly, so a new video is found at once. ``published_at``
    has a float payload index, which the query planner uses for selective date filters;
    excluded ids are a native ``must_not`` id condition. ``path=None`` puts the shard in a
    temporary folder that ``close`` (or garbage collection) removes, since edge has no memory
    mode. The shard's WAL lock allows one open shard per folder, across processes and within one.
    """

    # qdrant-edge raises plain ``Exception`` for every engine failure (no subclass to catch);
    # VideoIndex only applies this to edge calls, whose own bugs would surface the same way.
    errors: ClassVar[tuple[type[BaseException], ...]] = (Exception,)

    def __init__(self, settings: IndexSettings, dim: int, visual_dim: int) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self._tmp: weakref.finalize | None = None
        if settings.path is None:
            tmp = tempfile.mkdtemp(prefix="vidrec-edge-")
            self._tmp = weakref.finalize(self, shutil.rmtree, tmp, ignore_errors=True)
            root = Path(tmp)
        else:
            root = Path(settings.path)
        self.dir = root / EDGE_DIR / settings.collection
        self.where = str(self.dir) if settings.path is not None else ":memory: (temporary folder)"
        self._min_points = settings.hnsw_min_points

        # payload_m=0: no extra per-payload-value links (a float field has no values to group
        # by, and they multiply the build time); selective date filters are scanned exactly.
        def config(visual: bool) -> qdrant_edge.EdgeConfig:
            vectors = {CONTENT: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)}
            if visual:
                vectors[VISUAL] = qe.EdgeVectorParams(size=visual_dim, distance=qe.Distance.Cosine)
            return qe.EdgeConfig(
                vectors=vectors,
                hnsw_config=qe.HnswIndexConfig(
                    m=settings.hnsw_m,
                    ef_construct=settings.hnsw_ef_construct,
                    full_scan_threshold=FULL_SCAN_KB,
                    payload_m=0,
                ),
                optimizers=qe.EdgeOptimizersConfig(default_segment_number=1, indexing_threshold=1),
            )

        self.visual = visual_dim > 0
        try:
            try:
                self._shard = self._open(config(self.visual), dim)
            except VideoIndexError as exc:
                # a shard written before issue 16 has the content vector only: keep using it
                if not self.visual or "incompatible" not in str(exc.__cause__).lower():
                    raise
                self._shard = self._open(config(False), dim)
                self.visual = False
                _no_visual(settings.collection, "an edge shard without it")
        except BaseException:
            self._remove_tmp()
            raise
        try:
            if "published_at" not in self._shard.info().payload_schema:
                self._shard.update(
                    qe.UpdateOperation.create_field_index(
                        "published_at", qe.PayloadSchemaType.Float
                    )
                )
        except BaseException:
            self.close()
            raise
        self._exact = qe.SearchParams(exact=True)
        # ACORN widens the walk through neighbours of filtered-out nodes when a filter passes
        # under 40 % of points (the fresh filter): without it recall@50 of "seen + last week"
        # fell to 0.57 at 100k real vectors (streams.bench.index --ann-log).
        self._hnsw = qe.SearchParams(
            hnsw_ef=settings.hnsw_ef, acorn=qe.AcornSearchParams(enable=True)
        )
        self._indexed = self._shard.info().indexed_vectors_count > 0

    def _open(self, config: qdrant_edge.EdgeConfig, dim: int) -> qdrant_edge.EdgeShard:
        qe = self._qe
        if not (self.dir / "segments").is_dir():
            self.dir.mkdir(parents=True, exist_ok=True)
            return qe.EdgeShard.create(str(self.dir), config)
        try:
            return qe.EdgeShard.load(str(self.dir), config)
        except Exception as exc:
            text = str(exc)
            if "WouldBlock" in text:
                raise VideoIndexError(
                    f"edge shard {self.dir} is already accessed by another open VideoIndex (in "
                    f"this or another process): one VideoIndex per folder, close the other first "
                    f"or use a Qdrant server for shared access"
                ) from exc
            if "incompatible" in text.lower():
                raise VideoIndexError(
                    f"edge shard {self.dir} does not hold a cosine {CONTENT!r} vector of size "
                    f"{dim} ({text}): use another collection name or delete it"
                ) from exc
            raise

    def _filter(
        self, exclude: frozenset[str], min_published_at: float | None
    ) -> qdrant_edge.Filter | None:
        qe = self._qe
        must = []
        if min_published_at is not None:
            must.append(
                qe.FieldCondition("published_at", range=qe.RangeFloat(gte=min_published_at))
            )
        must_not = [qe.HasIdCondition({point_id(v) for v in exclude})] if exclude else []
        if not must and not must_not:
            return None
        return qe.Filter(must=must or None, must_not=must_not or None)

    def upsert(self, ids: list[str], vectors: list[Named], payloads: list[dict[str, Any]]) -> None:
        qe = self._qe
        points = [
            qe.Point(pid, vec, payload)  # type: ignore[arg-type]
            for pid, vec, payload in zip(ids, vectors, payloads, strict=True)
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(points))

    def search(
        self,
        vectors: np.ndarray,
        limit: int,
        exclude_ids: Sequence[frozenset[str]],
        min_published_at: float | None,
    ) -> list[Hits]:
        qe = self._qe
        requests = [
            qe.QueryRequest(
                limit=limit,
                query=qe.Query.Nearest(row, using=CONTENT),
                filter=self._filter(ex, min_published_at),
                with_payload=["video_id"],
                params=self._hnsw if self._indexed else self._exact,
            )
            for row, ex in zip(vectors.tolist(), exclude_ids, strict=True)
        ]
        if len(requests) == 1:
            results = [self._shard.query(requests[0])]
        else:
            results = self._shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(p.payload["video_id"], p.score) for p in res if p.payload] for res in results]

    def retrieve(self, ids: list[str], with_vectors: bool) -> list[tuple[dict[str, Any], Named]]:
        names = [CONTENT, VISUAL] if self.visual else [CONTENT]
        records = self._shard.retrieve(
            ids, with_payload=True, with_vector=names if with_vectors else False
        )
        return _payloads_and_vectors(records)

    def count(self) -> int:
        return self._shard.count(self._qe.CountRequest(exact=True))

    def delete(self, ids: list[str]) -> None:
        self._shard.update(self._qe.UpdateOperation.delete_points(ids))

    def optimize(self) -> bool:
        if self._min_points is None or self.count() < self._min_points:
            return False
        built = bool(self._shard.optimize())
        self._indexed = self._shard.info().indexed_vectors_count > 0
        return built

    @property
    def approximate(self) -> bool:
        return self._indexed

    def _remove_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp()

    def close(self) -> None:
        try:
            self._shard.flush()
            self._shard.close()
        finally:
            self._remove_tmp()


class VideoIndex:
    """The ``content`` vectors of videos in one Qdrant collection (cosine distance).

    Parameters
    ----------
    settings
        ``backend`` picks the engine (see ``resolve_backend``): ``server`` (``url`` +
        ``api_key``), ``edge`` (qdrant-edge embedded in this process: Rust, WAL, exact search
        in about a millisecond at 10k points) or ``local`` (qdrant-client's pure-Python local
        mode: 3-9 ms per search at 3k points, 30-100 ms with a date filter). ``path`` is the
        folder of an embedded backend; None keeps the data only until ``close``.
    dim
        Width of the content vectors. An existing collection of another width is refused,
        because mixing encoders in one collection would make every score meaningless.
    visual_dim
        Width of the ``visual`` vectors (thumbnail descriptors); 0: none. A collection made
        before them, without a ``visual`` vector, is still used: it stores text vectors alone
        (logged once), and ``visual`` says so.

    Notes
    -----
    An embedded folder belongs to one open ``VideoIndex`` at a time (a second one, in this or
    another process, gets a ``VideoIndexError``); share data across processes with a server.
    Local mode warns above 20,000 points; edge is fine with hundreds of thousands.
    """

    def __init__(
        self, settings: IndexSettings | None = None, dim: int = 384, visual_dim: int = VISUAL_DIM
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if visual_dim < 0:
            raise ValueError("visual_dim must be >= 0")
        self.visual_dim = visual_dim
        self.settings = settings or IndexSettings()
        self.dim = dim
        self.collection = self.settings.collection
        if Path(self.collection).name != self.collection or self.collection in ("", ".", ".."):
            raise ValueError(f"collection must be a plain name, not {self.collection!r}")
        self.backend: BackendName = resolve_backend(self.settings)
        self._closed = True
        self._check_folder()
        self._where = self.settings.url if self.backend == "server" else self.settings.path
        self._impl: _Backend
        action = "connect" if self.backend == "server" else "open"
        if self.backend == "edge":
            if not edge_available():
                raise VideoIndexError(
                    "backend 'edge' needs qdrant-edge: pip install qdrant-edge-py"
                )
            with self._errors(action, _EdgeBackend.errors):
                self._impl = _EdgeBackend(self.settings, dim, visual_dim)
        else:
            with self._errors(action, _CLIENT_ERRORS):
                self._impl = _ClientBackend(
                    self.settings, dim, remote=self.backend == "server", visual_dim=visual_dim
                )
        self._where = self._impl.where
        self._closed = False

    def _check_folder(self) -> None:
        """Refuse a folder whose collection lives in the other embedded format.

        Opening it would show an empty index next to the real one instead of the stored videos.
        """
        if self.settings.path is None or self.backend == "server":
            return
        root = Path(self.settings.path)
        mine, other = (EDGE_DIR, LOCAL_DIR) if self.backend == "edge" else (LOCAL_DIR, EDGE_DIR)
        if (root / other / self.collection).is_dir() and not (
            root / mine / self.collection
        ).is_dir():
            name = "edge" if other == EDGE_DIR else "local"
            raise VideoIndexError(
                f"{root} holds collection {self.collection!r} for backend {name!r}, not "
                f"{self.backend!r}: set VIDREC_QDRANT_BACKEND={name}, or re-index into a new folder"
            )

    @contextmanager
    def _errors(
        self, action: str, errors: tuple[type[BaseException], ...] | None = None
    ) -> Iterator[None]:
        caught = errors if errors is not None else self._impl.errors
        try:
            yield
        except VideoIndexError:
            raise
        except caught as exc:
            raise VideoIndexError(
                f"qdrant {self.backend} {action} failed (collection {self.collection!r} at "
                f"{self._where or ':memory:'}): {exc}"
            ) from exc

    def _check_visual(self, vector: np.ndarray) -> np.ndarray:
        arr = np.asarray(vector, dtype=np.float32)
        if arr.shape != (self.visual_dim,):
            raise ValueError(
                f"expected a visual vector of shape ({self.visual_dim},), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ValueError("visual vectors must be finite")
        return arr

    def _check_vectors(self, vectors: np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.shape != (n, self.dim):
            raise ValueError(f"expected vectors of shape ({n}, {self.dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("vectors must be finite")
        return arr

    @staticmethod
    def _exclusions(exclude_ids: Collection[str]) -> frozenset[str]:
        if isinstance(exclude_ids, str):
            raise TypeError("exclude_ids must be a collection of video ids, not one string")
        return frozenset(exclude_ids)

    @property
    def visual(self) -> bool:
        """Whether the collection stores visual vectors (False: made before them, or off)."""
        return self._impl.visual

    def upsert_many(
        self,
        video_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, Any]],
        visuals: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        """Insert or overwrite videos, ``UPSERT_BATCH`` points per call, each durable on return.

        Each payload must hold ``published_at`` (epoch seconds or an aware datetime, stored as
        float seconds) and otherwise JSON-able metadata; ``video_id`` is set from ``video_ids``.
        ``visuals`` holds each video's visual descriptor or None (stored without one); a
        collection without the ``visual`` vector stores the text vectors alone.
        """
        if len(payloads) != len(video_ids):
            raise ValueError("video_ids and payloads differ in length")
        arr = self._check_vectors(vectors, len(video_ids))
        named: list[Named] = [{CONTENT: row} for row in arr.tolist()]
        if visuals is not None:
            if len(visuals) != len(video_ids):
                raise ValueError("video_ids and visuals differ in length")
            for vec, vis in zip(named, visuals, strict=True):
                if vis is not None and self._impl.visual:
                    vec[VISUAL] = self._check_visual(vis).tolist()
        full = [
            {**p, "video_id": vid, "published_at": _epoch(p.get("published_at"))}
            for vid, p in zip(video_ids, payloads, strict=True)
        ]
        ids = [point_id(v) for v in video_ids]
        with self._errors("upsert"):
            for start in range(0, len(ids), UPSERT_BATCH):
                stop = start + UPSERT_BATCH
                self._impl.upsert(ids[start:stop], named[start:stop], full[start:stop])

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        exclude_ids: Collection[str] = (),
        min_published_at: float | None = None,
    ) -> list[tuple[str, float]]:
        """The ``limit`` nearest videos as ``(video_id, cosine)``, best first.

        ``exclude_ids`` and ``min_published_at`` are exact: up to ``limit`` results come back
        however many near neighbours they remove.
        """
        excluded = self._exclusions(exclude_ids)
        if limit < 1:
            return []
        query = self._check_vectors(np.asarray(vector).reshape(1, -1), 1)
        since = None if min_published_at is None else float(min_published_at)
        with self._errors("search"):
            return self._impl.search(query, limit, [excluded], since)[0]

    def search_many(
        self,
        vectors: np.ndarray,
        limit: int,
        exclude_ids: Sequence[Collection[str]] | None = None,
        min_published_at: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """``search`` for several vectors in one request; ``exclude_ids`` holds one set per row."""
        arr = np.asarray(vectors, dtype=np.float32)
        arr = self._check_vectors(arr, arr.shape[0] if arr.ndim == 2 else -1)
        if exclude_ids is not None and len(exclude_ids) != len(arr):
            raise ValueError("exclude_ids needs one collection per query vector")
        excluded = [
            self._exclusions(exclude_ids[i] if exclude_ids else ()) for i in range(len(arr))
        ]
        if limit < 1 or len(arr) == 0:
            return [[] for _ in range(len(arr))]
        since = None if min_published_at is None else float(min_published_at)
        with self._errors("batch search"):
            return self._impl.search(arr, limit, excluded, since)

    def _retrieve(
        self, video_ids: Collection[str], with_vectors: bool
    ) -> list[tuple[dict[str, Any], Named]]:
        if not video_ids:
            return []
        with self._errors("retrieve"):
            return self._impl.retrieve([point_id(v) for v in video_ids], with_vectors)

    def get_vectors(self, video_ids: Collection[str]) -> dict[str, np.ndarray]:
        """Stored content vectors (float32, unit norm) of the videos present; others are absent."""
        return {
            payload["video_id"]: np.asarray(vec[CONTENT], dtype=np.float32)
            for payload, vec in self._retrieve(video_ids, with_vectors=True)
            if CONTENT in vec
        }

    def get_visuals(self, video_ids: Collection[str]) -> dict[str, np.ndarray]:
        """Stored visual descriptors of the videos that have one; others are absent."""
        if not self._impl.visual:
            return {}
        return {
            payload["video_id"]: np.asarray(vec[VISUAL], dtype=np.float32)
            for payload, vec in self._retrieve(video_ids, with_vectors=True)
            if VISUAL in vec
        }

    def get_payloads(self, video_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Stored payloads of the videos present; others are absent."""
        return {p["video_id"]: p for p, _ in self._retrieve(video_ids, with_vectors=False)}

    def count(self) -> int:
        with self._errors("count"):
            return self._impl.count()

    @property
    def approximate(self) -> bool:
        """Whether ``search`` may walk an HNSW graph (recall below 1) instead of scanning.

        An engine that holds the vectors itself can keep exact search while this is False.
        """
        return self._impl.approximate

    def optimize(self) -> bool:
        """Build the HNSW graph now if the collection holds ``hnsw_min_points`` or more.

        Edge only (a server builds its graph in the background, local mode has none): it
        blocks this process for the build (about a second per thousand 384-d points on 2
        busy cores), so call it after a bulk load, before serving. Returns whether it built.
        """
        with self._errors("optimize"):
            return self._impl.optimize()

    def delete_many(self, video_ids: Collection[str]) -> None:
        """Remove videos; unknown ids are ignored."""
        if not video_ids:
            return
        with self._errors("delete"):
            self._impl.delete([point_id(v) for v in video_ids])

    def close(self) -> None:
        """Release the engine and its folder lock (edge: flush first); calling it twice is fine."""
        if self._closed:
            return
        self._closed = True
        with self._errors("close"):
            self._impl.close()

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _payloads_and_vectors(records: Any) -> list[tuple[dict[str, Any], Named]]:
    """(payload, named vectors) of retrieved points, from either backend's record type."""
    out: list[tuple[dict[str, Any], Named]] = []
    for rec in records:
        vec = dict(rec.vector) if isinstance(rec.vector, Mapping) else {}
        if rec.payload:
            out.append((dict(rec.payload), vec))
    return out


_warned_no_visual: set[str] = set()


def _no_visual(collection: str, what: str) -> None:
    """Say once per collection that thumbnails' vectors are not stored in it."""
    if collection in _warned_no_visual:
        return
    _warned_no_visual.add(collection)
    log.warning(
        "collection %r has no %r vector of size %d (%s): it was made before thumbnails "
        "(issue 16); videos are stored with their text vectors alone. Re-index into a new "
        "collection to store visual descriptors.",
        collection,
        VISUAL,
        VISUAL_DIM,
        what,
    )
