"""The content encoder's benchmark: titles/s, fp32 against int8.

``vidrec bench --only encoder`` runs ``bench_encoder`` on titles of the sample (a table row);
``python -m streams.bench.encoder [--n 1000] [--reps 3] [--threads 0] [--index] [--no-encoder]``
runs the longer standalone comparison on generated titles (best of ``--reps``, int8's cosine to
fp32, and a title alone against in a batch), with ``--index`` also the embedded index
(``streams.bench.index``). Figures depend on what else the machine runs; the load average is
printed next to them.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from typing import Any

import numpy as np

from streams.bench.report import Row
from streams.bench.synthetic import HOOKS, KINDS, TOPICS

# workers.encoder (torch) is imported inside the functions: `vidrec --help` loads this module.


def sample_titles(path: str, n: int) -> list[str]:
    from schemas import VideoPublished
    from streams.wire.eventlog import read_log

    out: list[str] = []
    for msg in read_log(path):
        if isinstance(msg, VideoPublished):
            out.append(msg.text())
            if len(out) >= n:
                break
    return out


def bench_encoder(texts: list[str]) -> list[Row]:
    from workers.encoder import Encoder
    from workers.settings import EncoderSettings

    rows = []
    rates = {}
    for label, int8 in (("fp32", False), ("int8", True)):
        enc = Encoder(EncoderSettings(quantize_int8=int8))
        enc.encode_many(texts[:64])  # warm-up
        t0 = time.perf_counter()
        enc.encode_many(texts)
        rates[label] = len(texts) / (time.perf_counter() - t0)
        rows.append(
            Row("encoder", f"encoder {label} ({enc.device})", f"{rates[label]:.0f} titles/s",
                f"{len(texts)} titles of the sample, batch {enc.settings.batch_size}")
        )  # fmt: skip
    rows.append(
        Row("encoder", "encoder int8 / fp32", f"x{rates['int8'] / rates['fp32']:.2f}", "same run")
    )
    return rows


# -- the standalone comparison ------------------------------------------------------------------
def titles(n: int, seed: int = 0) -> list[str]:
    """Generated video titles of varied length, some with a short description."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = f"{rng.choice(HOOKS)} {rng.choice(TOPICS)} {rng.choice(KINDS)}".strip()
        if rng.random() < 0.3:
            extra = " ".join(rng.choice(TOPICS + KINDS) for _ in range(rng.randint(3, 30)))
            t += f". Today: {extra}"
        out.append(t)
    return out


def rate(enc: Any, texts: list[str], reps: int) -> tuple[float, np.ndarray]:
    """Best titles/s over ``reps`` runs (best-of, to damp noise from other processes)."""
    enc.encode_many(texts[:64])
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        vecs = enc.encode_many(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best, vecs


def compare_int8(n: int, reps: int, threads: int) -> None:
    """Print fp32 and int8 titles/s and how far int8's vectors drift from fp32's."""
    import torch

    from workers.encoder import Encoder
    from workers.settings import EncoderSettings

    texts = titles(n)
    fp32 = Encoder(EncoderSettings(batch_size=64, threads=threads))
    int8 = Encoder(EncoderSettings(batch_size=64, threads=threads, quantize_int8=True))
    r32, v32 = rate(fp32, texts, reps)
    r8, v8 = rate(int8, texts, reps)
    cos = (v32 * v8).sum(axis=1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {fp32.device}")
    print(f"encoder fp32: {r32:7.0f} titles/s  (batch 64, {n} titles, best of {reps})")
    print(f"encoder int8: {r8:7.0f} titles/s  (x{r8 / r32:.2f})")
    print(f"int8 vs fp32 cosine: mean {cos.mean():.4f}  p1 {np.percentile(cos, 1):.4f}  "
          f"min {cos.min():.4f}")  # fmt: skip
    single = np.stack([int8.encode_many([t])[0] for t in texts[:100]])
    drift = (single * v8[:100]).sum(axis=1)
    print(f"int8 alone vs in batch 64, cosine: mean {drift.mean():.4f}  min {drift.min():.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000, help="titles to encode")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    ap.add_argument("--index", action="store_true", help="also benchmark local-mode Qdrant")
    ap.add_argument("--no-encoder", action="store_true")
    args = ap.parse_args()
    import workers.encoder  # noqa: F401 (sets OMP_WAIT_POLICY before anything loads torch)

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    if not args.no_encoder:
        compare_int8(args.n, args.reps, args.threads)
    if args.index:
        from streams.bench.index import bench_embedded

        bench_embedded([3000, 10000], queries=100)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
