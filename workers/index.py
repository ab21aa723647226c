"""Store and search video content vectors in Qdrant, embedded on disk or on a server.

Point ids are ``uuid5(VIDEO_NAMESPACE, video_id)``, so re-delivering a video overwrites its point
instead of adding one, and every payload carries ``video_id`` (uuid5 cannot be inverted) and
``published_at`` as float epoch seconds (for freshness filters).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import QdrantException
from qdrant_client.http.exceptions import ApiException

from workers.settings import IndexSettings

# Fixed for good: a new namespace would orphan every stored point.
VIDEO_NAMESPACE = uuid.UUID("8de831a1-b897-542d-ba22-d26a107a4d87")
CONTENT = "content"
UPSERT_BATCH = 256
# Up to this many excluded ids are dropped from an over-fetched result instead of a Qdrant
# filter: exact either way, and in local mode (which checks filters point by point in Python)
# 5x faster at 10k points. Larger sets go into a must_not HasIdCondition filter.
EXCLUDE_BY_OVERFETCH_MAX = 256

_QDRANT_ERRORS = (ApiException, QdrantException, ValueError, RuntimeError, OSError)


class VideoIndexError(RuntimeError):
    """A Qdrant call failed; ``__cause__`` holds the client's own exception."""


def point_id(video_id: str) -> str:
    """The Qdrant point id of a video: deterministic, so upserts are idempotent."""
    return str(uuid.uuid5(VIDEO_NAMESPACE, video_id))


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("published_at must be timezone-aware")
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise ValueError(f"published_at must be epoch seconds or an aware datetime, not {value!r}")


def _hits(
    points: Sequence[models.ScoredPoint], excluded: frozenset[str], limit: int
) -> list[tuple[str, float]]:
    hits = [(p.payload["video_id"], float(p.score)) for p in points if p.payload]
    return [h for h in hits if h[0] not in excluded][:limit]


class VideoIndex:
    """The ``content`` vectors of videos in one Qdrant collection (cosine distance).

    Parameters
    ----------
    settings
        ``url`` (+ ``api_key``) selects a Qdrant server; otherwise ``path`` is the folder of
        qdrant-client's embedded local mode, or memory when ``path`` is None. Everything after
        construction is the same code for all three.
    dim
        Width of the content vectors. An existing collection of another width is refused,
        because mixing encoders in one collection would make every score meaningless.

    Notes
    -----
    Local mode searches by brute force in Python/numpy, takes an exclusive lock on its folder
    (one ``VideoIndex`` per path per process tree), ignores payload indexes, and warns above
    20,000 points; use a server beyond that.
    """

    def __init__(self, settings: IndexSettings | None = None, dim: int = 384) -> None:
        if dim < 1:
            raise ValueError("dim must be >= 1")
        self.settings = settings or IndexSettings()
        self.dim = dim
        self.collection = self.settings.collection
        s = self.settings
        self._remote = s.url is not None
        with self._errors("connect"):
            if s.url is not None:
                key = s.api_key.get_secret_value() if s.api_key is not None else None
                self._client = QdrantClient(url=s.url, api_key=key, timeout=math.ceil(s.timeout_s))
            elif s.path is not None:
                self._client = QdrantClient(path=s.path)
            else:
                self._client = QdrantClient(location=":memory:")
        self._closed = False
        try:
            self._ensure_collection()
        except BaseException:
            self.close()
            raise

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except _QDRANT_ERRORS as exc:
            where = self.settings.url or self.settings.path or ":memory:"
            raise VideoIndexError(
                f"qdrant {action} failed (collection {self.collection!r} at {where}): {exc}"
            ) from exc

    def _ensure_collection(self) -> None:
        with self._errors("create collection"):
            if not self._client.collection_exists(self.collection):
                self._client.create_collection(
                    self.collection,
                    vectors_config={
                        CONTENT: models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
                    },
                )
                if self._remote:  # local mode ignores payload indexes and warns about them
                    self._client.create_payload_index(
                        self.collection, "published_at", models.PayloadSchemaType.FLOAT
                    )
            vectors = self._client.get_collection(self.collection).config.params.vectors
        params = vectors.get(CONTENT) if isinstance(vectors, Mapping) else None
        if params is None or params.size != self.dim or params.distance != models.Distance.COSINE:
            raise VideoIndexError(
                f"collection {self.collection!r} has vectors {vectors!r}, not a cosine "
                f"{CONTENT!r} vector of size {self.dim}: use another collection name or delete it"
            )

    def _check_vectors(self, vectors: np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.shape != (n, self.dim):
            raise ValueError(f"expected vectors of shape ({n}, {self.dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("vectors must be finite")
        return arr

    def upsert_many(
        self,
        video_ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[Mapping[str, Any]],
    ) -> None:
        """Insert or overwrite videos, ``UPSERT_BATCH`` points per call, waiting for each.

        Each payload must hold ``published_at`` (epoch seconds or an aware datetime, stored as
        float seconds) and otherwise JSON-able metadata; ``video_id`` is set from ``video_ids``.
        """
        if len(payloads) != len(video_ids):
            raise ValueError("video_ids and payloads differ in length")
        arr = self._check_vectors(vectors, len(video_ids))
        full = [
            {**p, "video_id": vid, "published_at": _epoch(p.get("published_at"))}
            for vid, p in zip(video_ids, payloads, strict=True)
        ]
        with self._errors("upsert"):
            for start in range(0, len(video_ids), UPSERT_BATCH):
                stop = start + UPSERT_BATCH
                batch = models.Batch(
                    ids=[point_id(v) for v in video_ids[start:stop]],
                    vectors={CONTENT: arr[start:stop].tolist()},
                    payloads=full[start:stop],
                )
                self._client.upsert(self.collection, points=batch, wait=True)

    @staticmethod
    def _split_exclusions(exclude_ids: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
        """(ids to drop after an over-fetch, ids to put in the filter): one of them is empty."""
        if isinstance(exclude_ids, str):
            raise TypeError("exclude_ids must be a collection of video ids, not one string")
        ids = frozenset(exclude_ids)
        if len(ids) <= EXCLUDE_BY_OVERFETCH_MAX:
            return ids, frozenset()
        return frozenset(), ids

    @staticmethod
    def _filter(
        exclude_ids: Collection[str], min_published_at: float | None
    ) -> models.Filter | None:
        must: list[models.Condition] = []
        must_not: list[models.Condition] = []
        if exclude_ids:
            must_not.append(models.HasIdCondition(has_id=[point_id(v) for v in exclude_ids]))
        if min_published_at is not None:
            must.append(
                models.FieldCondition(
                    key="published_at", range=models.Range(gte=float(min_published_at))
                )
            )
        if not must and not must_not:
            return None
        return models.Filter(must=must or None, must_not=must_not or None)

    def _query_vector(self, vector: np.ndarray) -> list[float]:
        return self._check_vectors(np.asarray(vector).reshape(1, -1), 1)[0].tolist()

    def search(
        self,
        vector: np.ndarray,
        limit: int,
        exclude_ids: Collection[str] = (),
        min_published_at: float | None = None,
    ) -> list[tuple[str, float]]:
        """The ``limit`` nearest videos as ``(video_id, cosine)``, best first.

        ``exclude_ids`` and ``min_published_at`` are exact: up to ``limit`` results come back
        however many near neighbours they remove. Excluded ids are dropped from an over-fetched
        result (a filter above ``EXCLUDE_BY_OVERFETCH_MAX`` ids); the date is a Qdrant filter,
        which local mode evaluates point by point (about 90 ms at 10k points).
        """
        if limit < 1:
            return []
        query = self._query_vector(vector)
        excluded, in_filter = self._split_exclusions(exclude_ids)
        with self._errors("search"):
            res = self._client.query_points(
                self.collection,
                query=query,
                using=CONTENT,
                query_filter=self._filter(in_filter, min_published_at),
                limit=limit + len(excluded),
                with_payload=["video_id"],
            )
        return _hits(res.points, excluded, limit)

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
        if limit < 1 or len(arr) == 0:
            return [[] for _ in range(len(arr))]
        splits = [
            self._split_exclusions(exclude_ids[i] if exclude_ids else ()) for i in range(len(arr))
        ]
        requests = [
            models.QueryRequest(
                query=row.tolist(),
                using=CONTENT,
                filter=self._filter(in_filter, min_published_at),
                limit=limit + len(excluded),
                with_payload=["video_id"],
            )
            for row, (excluded, in_filter) in zip(arr, splits, strict=True)
        ]
        with self._errors("batch search"):
            res = self._client.query_batch_points(self.collection, requests=requests)
        return [_hits(r.points, ex, limit) for r, (ex, _) in zip(res, splits, strict=True)]

    def _retrieve(self, video_ids: Collection[str], with_vectors: bool) -> list[models.Record]:
        if not video_ids:
            return []
        with self._errors("retrieve"):
            return self._client.retrieve(
                self.collection,
                ids=[point_id(v) for v in video_ids],
                with_payload=True,
                with_vectors=[CONTENT] if with_vectors else False,
            )

    def get_vectors(self, video_ids: Collection[str]) -> dict[str, np.ndarray]:
        """Stored content vectors (float32, unit norm) of the videos present; others are absent."""
        out: dict[str, np.ndarray] = {}
        for rec in self._retrieve(video_ids, with_vectors=True):
            vec = rec.vector[CONTENT] if isinstance(rec.vector, Mapping) else None
            if rec.payload and vec is not None:
                out[rec.payload["video_id"]] = np.asarray(vec, dtype=np.float32)
        return out

    def get_payloads(self, video_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """Stored payloads of the videos present; others are absent."""
        return {r.payload["video_id"]: dict(r.payload) for r in self._retrieve(video_ids, False)}

    def count(self) -> int:
        with self._errors("count"):
            return self._client.count(self.collection, exact=True).count

    def delete_many(self, video_ids: Collection[str]) -> None:
        """Remove videos; unknown ids are ignored."""
        if not video_ids:
            return
        with self._errors("delete"):
            self._client.delete(
                self.collection,
                points_selector=models.PointIdsList(points=[point_id(v) for v in video_ids]),
                wait=True,
            )

    def close(self) -> None:
        """Release the client (and the local-mode folder lock); calling it twice is fine."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        with self._errors("close"):
            self._client.close()

    def __enter__(self) -> VideoIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
