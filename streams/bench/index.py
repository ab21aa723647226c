"""Compare the embedded index backends (qdrant-edge vs qdrant-client local mode) side by side.

Run from the repository root: ``python -m streams.bench.index [--sizes 3000 10000 100000]``.
``bench_embedded`` times the default backend alone (``python -m streams.bench.encoder --index``).
Each backend gets a fresh folder (the production set-up: ``path`` on disk), the same random
384-d unit vectors and the same queries; the table gives upsert points/s and ms per ``search``
(plain, with ``min_published_at``, with 50 excluded ids), and local/edge ratios. Local mode is
skipped above ``--local-max`` points (its on-disk upserts run at about a hundred points/s).
Figures depend on what else the machine runs; the load average is printed next to them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from streams.bench.synthetic import DAY, DIM
from workers.index import VideoIndex, edge_available
from workers.settings import IndexSettings

T_END = 1_700_000_000.0
SPAN_DAYS = 30.0
FRESH_DAYS = 7.0  # min_published_at keeps about FRESH_DAYS / SPAN_DAYS of the catalogue
N_EXCLUDED = 50
LIMIT = 20

Result = dict[str, float]


def unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def timed_ms(fn: object, calls: list[tuple]) -> float:
    """Median milliseconds of ``fn(*args)`` over ``calls`` (after three warm-up calls)."""
    for args in calls[:3]:
        fn(*args)  # type: ignore[operator]
    times = []
    for args in calls:
        t = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def bench_backend(
    backend: str, ids: list[str], vecs: np.ndarray, published: np.ndarray, n_queries: int
) -> tuple[Result, list[list[str]]]:
    rng = np.random.default_rng(1)
    queries = unit_rows(n_queries, rng)
    excluded = [set(rng.choice(ids, N_EXCLUDED, replace=False).tolist()) for _ in queries]
    # Exclusions that bite: the 50 nearest stored videos of each query, seen by the user.
    nearest = np.argsort(-(queries @ vecs.T), axis=1)[:, :N_EXCLUDED]
    seen = [{ids[j] for j in row} for row in nearest]
    since = T_END - FRESH_DAYS * DAY
    payloads = [{"published_at": float(t)} for t in published]
    out: Result = {}
    with tempfile.TemporaryDirectory(prefix=f"bench-{backend}-") as tmp:
        settings = IndexSettings(path=tmp, backend=backend)
        t = time.perf_counter()
        with VideoIndex(settings, dim=DIM) as index:
            index.upsert_many(ids, vecs, payloads)
            out["upsert points/s"] = len(ids) / (time.perf_counter() - t)
            s = index.search
            out["ms plain"] = timed_ms(s, [(q, LIMIT) for q in queries])
            out["ms min_published_at"] = timed_ms(s, [(q, LIMIT, (), since) for q in queries])
            out["ms 50 random excluded"] = timed_ms(
                s, [(q, LIMIT, e) for q, e in zip(queries, excluded, strict=True)]
            )
            out["ms 50 nearest excluded"] = timed_ms(
                s, [(q, LIMIT, e) for q, e in zip(queries, seen, strict=True)]
            )
            answers = [
                [v for v, _ in s(q, LIMIT, e, since)] for q, e in zip(queries, seen, strict=True)
            ]
    return out, answers


def bench_embedded(sizes: list[int], queries: int) -> None:
    """One embedded index (the backend ``auto`` picks): upsert points/s, ms per filtered search.

    ``python -m streams.bench.encoder --index`` runs it, as the infra script it came from did;
    its lines still say "qdrant local" from before edge became ``auto``'s choice.
    """
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument("--local-max", type=int, default=10_000, help="skip local above this")
    args = parser.parse_args()
    if not edge_available():
        print("qdrant-edge-py is not installed: pip install qdrant-edge-py", file=sys.stderr)
        return 1
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs, dim {DIM}, limit {LIMIT}")
    header = f"{'points':>7}  {'metric':<24}{'local':>12}{'edge':>12}{'local/edge':>12}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        rng = np.random.default_rng(n)
        ids = [f"vid-{i}" for i in range(n)]
        vecs = unit_rows(n, rng)
        published = T_END - rng.uniform(0.0, SPAN_DAYS * DAY, size=n)
        edge, edge_answers = bench_backend("edge", ids, vecs, published, args.queries)
        local: Result = {}
        agree = ""
        if n <= args.local_max:
            local, local_answers = bench_backend("local", ids, vecs, published, args.queries)
            same = sum(a == b for a, b in zip(local_answers, edge_answers, strict=True))
            agree = f"  (filtered top-{LIMIT} lists identical: {same}/{len(edge_answers)})"
        for metric, e in edge.items():
            loc = local.get(metric)
            if loc is None:
                cells = f"{'skipped':>12}{e:>12.2f}{'':>12}"
            else:
                # Ratio = how many times faster edge is (points/s: edge/local; ms: local/edge).
                ratio = e / loc if metric.startswith("upsert") else loc / e
                cells = f"{loc:>12.2f}{e:>12.2f}{ratio:>11.1f}x"
            print(f"{n:>7}  {metric:<24}{cells}")
        if agree:
            print(f"{'':>9}{agree.strip()}")
    print("ratio column: how many times faster edge is than local mode")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
