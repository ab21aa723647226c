"""The engine's BLAS runs on one thread even when numpy was imported before vidrec."""

import subprocess
import sys

CODE = """
import numpy, threadpoolctl
import workers
print(max(i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"))
"""


def test_one_blas_thread_when_numpy_came_first() -> None:
    # no OPENBLAS_NUM_THREADS: numpy starts a two-thread pool before workers is imported
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "1"
