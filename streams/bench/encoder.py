"""Micro-benchmark of the content encoder (fp32 vs int8) and, with --index, of local-mode Qdrant.

Run from the repository root: ``python -m streams.bench.encoder [--n 1000] [--index]``.
Figures depend on what else the machine runs; the load average is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import numpy as np

from workers.encoder import Encoder  # (sets OMP_WAIT_POLICY before torch loads)
from workers.index import VideoIndex
from workers.settings import EncoderSettings, IndexSettings

_HOOKS = ["", "how to", "best", "easy", "top 10", "why", "my first", "ultimate", "live:"]
_TOPICS = [
    "pasta", "sourdough bread", "football", "guitar", "python", "yoga", "minecraft", "cats",
    "tokyo travel", "makeup", "piano", "chess", "electric cars", "drones", "coffee", "gardening",
    "marathon training", "home workout", "budget gaming pc", "street food", "jazz", "physics",
]  # fmt: skip
_KINDS = [
    "recipe", "highlights", "tutorial", "review", "vlog", "challenge", "compilation", "tips",
    "for beginners", "explained", "unboxing", "in 10 minutes", "mistakes to avoid",
]  # fmt: skip


def titles(n: int, seed: int = 0) -> list[str]:
    """Generated video titles of varied length, some with a short description."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = f"{rng.choice(_HOOKS)} {rng.choice(_TOPICS)} {rng.choice(_KINDS)}".strip()
        if rng.random() < 0.3:
            extra = " ".join(rng.choice(_TOPICS + _KINDS) for _ in range(rng.randint(3, 30)))
            t += f". Today: {extra}"
        out.append(t)
    return out


def rate(enc: Encoder, texts: list[str], reps: int) -> tuple[float, np.ndarray]:
    """Best titles/s over ``reps`` runs (best-of, to damp noise from other processes)."""
    enc.encode_many(texts[:64])
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        vecs = enc.encode_many(texts)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best, vecs


def bench_encoder(n: int, reps: int, threads: int) -> None:
    import torch

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


def bench_index(sizes: list[int], queries: int) -> None:
    rng = np.random.default_rng(0)
    for n in sizes:
        vecs = rng.normal(size=(n, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        ids = [f"v{i}" for i in range(n)]
        pays = [{"published_at": 1.7e9 + i * 60.0, "category": "x"} for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            index = VideoIndex(IndexSettings(path=tmp), 384)
            t0 = time.perf_counter()
            index.upsert_many(ids, vecs, pays)
            up = n / (time.perf_counter() - t0)
            q = vecs[rng.integers(0, n, queries)]
            excl = [str(i) for i in rng.choice(ids, 50, replace=False)]
            cut = 1.7e9 + n * 60.0 * 0.8  # the newest 20 %
            cases = {
                "plain": {},
                "min_published_at (20% pass)": {"min_published_at": cut},
                "50 exclude_ids": {"exclude_ids": excl},
            }
            print(f"qdrant local n={n}: upsert {up:,.0f} points/s")
            for label, kw in cases.items():
                index.search(q[0], 20, **kw)
                t0 = time.perf_counter()
                for v in q:
                    index.search(v, 20, **kw)
                ms = (time.perf_counter() - t0) * 1000 / queries
                print(f"  search k=20 {label:28s} {ms:7.2f} ms/query")
            t0 = time.perf_counter()
            index.search_many(q, 20)
            print(f"  search_many k=20 x{queries:<4d}            "
                  f"{(time.perf_counter() - t0) * 1000 / queries:7.2f} ms/query")  # fmt: skip
            t0 = time.perf_counter()
            index.close()
            index = VideoIndex(IndexSettings(path=tmp), 384)
            print(f"  reopen {time.perf_counter() - t0:.2f} s, count {index.count()}")
            index.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000, help="titles to encode")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    ap.add_argument("--index", action="store_true", help="also benchmark local-mode Qdrant")
    ap.add_argument("--no-encoder", action="store_true")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    if not args.no_encoder:
        bench_encoder(args.n, args.reps, args.threads)
    if args.index:
        bench_index([3000, 10000], queries=100)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
