"""The engine: encoder, video index, co-occurrence, factors, ranker, and the faust agents."""

import os

# numpy's OpenBLAS spreads even a 3000x384 matrix-vector product over every core; on a busy
# 2-core box its spinning threads make that 100x slower (7.7 ms instead of 0.07 ms, measured).
# The engine's numpy work is many small operations, so one thread is the right default; the
# encoder (torch) has its own thread pool. Must run before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
