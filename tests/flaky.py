"""A vector index that fails on purpose, and a worker that runs on one (for the outage tests).

``FlakyIndex`` wraps a real ``VideoIndex`` and raises ``VideoIndexError`` (what the real one
raises when Qdrant is down) from its first ``fail_calls`` calls, and from every call while the
file ``outage_file`` exists (so another process can switch the outage on and off); each call
can also take ``slow_s`` longer (a slow backend). ``WORKER_COMMAND`` runs a ``vidrec worker``
whose engine uses one, configured by ``VIDREC_TEST_FAIL_CALLS``, ``VIDREC_TEST_OUTAGE_FILE``
and ``VIDREC_TEST_SLOW_S``: the real-broker test starts it as a subprocess, so the code under
test is the worker's own.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import numpy as np

from workers.index import VideoIndexError

# run from the repository root, as WorkerProcess does
WORKER_COMMAND = [
    sys.executable,
    "-c",
    "import sys; sys.path[:0] = ['', 'tests']; import flaky; sys.exit(flaky.main())",
]


class FlakyIndex:
    """Delegates to ``inner``; fails the first calls (or for a while) with ``VideoIndexError``."""

    def __init__(
        self,
        inner: Any,
        fail_calls: int = 0,
        outage_file: str | None = None,
        slow_s: float = 0.0,
    ) -> None:
        self.inner = inner
        self.fail_calls = fail_calls
        self.outage_file = outage_file
        self.slow_s = slow_s
        self.calls = 0
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def _maybe_fail(self, what: str) -> None:
        if self.slow_s:
            time.sleep(self.slow_s)
        with self._lock:
            self.calls += 1
            failing = self.calls <= self.fail_calls or (
                self.outage_file is not None and os.path.exists(self.outage_file)
            )
            if failing:
                self.failures[what] = self.failures.get(what, 0) + 1
        if failing:
            raise VideoIndexError(f"qdrant {what} failed: injected outage")

    @property
    def dim(self) -> int:
        return self.inner.dim

    def upsert_many(self, video_ids: Any, vectors: np.ndarray, payloads: Any) -> None:
        self._maybe_fail("upsert")
        self.inner.upsert_many(video_ids, vectors, payloads)

    def search(self, vector: np.ndarray, limit: int, **kwargs: Any) -> list[tuple[str, float]]:
        self._maybe_fail("search")
        return self.inner.search(vector, limit, **kwargs)

    def count(self) -> int:
        return self.inner.count()

    def close(self) -> None:
        self.inner.close()


def main() -> int:
    """A ``vidrec worker`` on a ``FlakyIndex`` (settings from the environment, as usual)."""
    from streams.worker.app import WorkerSettings, make_app, run
    from workers.encoder import load_encoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EncoderSettings, EngineSettings, IndexSettings

    encoder = load_encoder(EncoderSettings())
    real = VideoIndex(IndexSettings(), dim=encoder.dim)
    index = FlakyIndex(
        real,
        fail_calls=int(os.environ.get("VIDREC_TEST_FAIL_CALLS", "0")),
        outage_file=os.environ.get("VIDREC_TEST_OUTAGE_FILE") or None,
        slow_s=float(os.environ.get("VIDREC_TEST_SLOW_S", "0")),
    )
    wa = make_app(WorkerSettings(), engine=Engine(EngineSettings(), encoder, index))
    wa.index = index
    return run(wa)
