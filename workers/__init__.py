"""The engine and everything it learns with: one ``Engine`` per process, fed user events and
videos, publishing lists (see ``workers.engine``). No Kafka and no faust here.

The public names below are importable from ``workers`` directly; each loads its module on
first use, so that ``import workers.settings`` (the CLI's help) does not pay for torch and
Qdrant.
"""

import importlib
import os
import sys
from typing import Any

# numpy's OpenBLAS spreads even a 3000x384 matrix-vector product over every core; on a busy
# 2-core box its spinning threads make that 100x slower (7.7 ms instead of 0.07 ms, measured).
# The engine's numpy work is many small operations, so one thread is the right default; the
# encoder (torch) has its own thread pool. Must run before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if "numpy" in sys.modules:
    # Too late for the variable: numpy (imported first by a test, a notebook or the user's
    # code) has started its BLAS pool already. The spike measured 2.5x slower events then.
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"] or 1), user_api="blas")

_PUBLIC = {
    "Engine": "workers.engine",
    "Step": "workers.engine",
    "EngineSettings": "workers.settings",
    "EncoderSettings": "workers.settings",
    "IndexSettings": "workers.settings",
    "load_settings": "workers.settings",
    "Encoder": "workers.encoder",
    "HashingEncoder": "workers.encoder",
    "load_encoder": "workers.encoder",
    "VideoIndex": "workers.index",
    "Observation": "workers.models",
    "OnlineModel": "workers.models",
    "CoOccurrence": "workers.cooc",
    "Factors": "workers.factors",
    "Popularity": "workers.popularity",
    "Fusion": "workers.ranker",
    "EngineAdapter": "workers.adapter",
    "drive": "workers.inprocess",
    "Evaluator": "workers.evaluation",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'workers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
