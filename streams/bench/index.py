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
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import numpy as np

from streams.bench.report import Row
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


NOISE = 0.5  # a made-up point is a real vector plus noise of this norm: cosine ~0.89 to it
HISTORY = 50  # a user's profile is the mean of this many of their latest videos, all excluded
ANN_LIMIT = 50


def real_vectors(log: str, cache: str, encoder: str = "minilm") -> tuple[list[str], np.ndarray]:
    """Video ids and content vectors of every video record of ``log`` (a vidrec JSON-lines log).

    The text is ``VideoPublished.text()``, what the engine indexes. Encoding ~10k titles with
    MiniLM takes minutes on 2 cores, so the vectors are kept in ``cache`` (an .npz) and reused.
    """
    if os.path.exists(cache):
        data = np.load(cache)
        return data["ids"].tolist(), data["vecs"]
    from schemas.messages import VideoPublished
    from workers.encoder import load_encoder
    from workers.settings import EncoderSettings

    videos: dict[str, VideoPublished] = {}
    for d in _records(log):
        if d.get("kind") == "video" and d["video_id"] not in videos:
            videos[d["video_id"]] = VideoPublished.model_validate(d)
    ids = list(videos)
    model = EncoderSettings(model_path="hashing" if encoder == "hashing" else None)
    vecs = load_encoder(model).encode_many([videos[i].text() for i in ids])
    os.makedirs(os.path.dirname(cache) or ".", exist_ok=True)
    np.savez(cache, ids=np.array(ids), vecs=vecs)
    return ids, vecs


def _records(log: str) -> Iterator[dict]:
    with (gzip.open if log.endswith(".gz") else open)(log, "rt") as f:  # type: ignore[operator]
        for line in f:
            yield json.loads(line)


def user_histories(log: str, n_users: int) -> list[list[str]]:
    """The latest ``HISTORY`` videos of the first ``n_users`` users of ``log`` with 10 or more."""
    hist: dict[str, list[str]] = {}
    for d in _records(log):
        if d.get("kind") == "event":
            hist.setdefault(d["user_id"], []).append(d["video_id"])
    return [h[-HISTORY:] for h in hist.values() if len(h) >= 10][:n_users]


def grow(real: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit rows: the real ones first, then copies of real rows (in turn) plus noise.

    The copies keep the real vectors' clustered layout (HNSW's realistic case; random unit
    vectors are its worst), each at cosine ~0.89 to its source, so they crowd its neighbourhood.
    """
    if n <= len(real):
        return real[:n].copy()
    extra = real[np.arange(n - len(real)) % len(real)]
    noise = rng.normal(size=extra.shape).astype(np.float32) * (NOISE / np.sqrt(real.shape[1]))
    extra = extra + noise
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    return np.vstack([real, extra]).astype(np.float32)


def bench_ann(
    sizes: list[int],
    log: str,
    cache: str,
    n_queries: int,
    settings: IndexSettings,
    encoder: str = "minilm",
) -> list[tuple[int, str, float, float, float]]:
    """Recall@50 and ms per search of HNSW (edge) against exact search, on real embeddings.

    Points: the MiniLM vectors of ``log``'s video texts, grown to each size by ``grow``;
    published_at uniform over ``SPAN_DAYS``. Queries: users of ``log``: the mean vector of
    their latest ``HISTORY`` videos, with those videos excluded (the seen filter), alone and
    with ``min_published_at`` of the last ``FRESH_DAYS`` (the fresh filter). Recall@50 = share
    of the exact top 50 (same filters, exact search of the same shard) that HNSW returns.
    Returns rows (points, case, recall, exact ms, hnsw ms) and prints them with build times.
    """
    real_ids, real = real_vectors(log, cache, encoder)
    histories = user_histories(log, n_queries)
    pos = {v: i for i, v in enumerate(real_ids)}
    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        vecs = grow(real, n, rng)
        ids = real_ids[: min(n, len(real_ids))] + [f"x{i}" for i in range(n - len(real_ids))]
        published = T_END - rng.uniform(0.0, SPAN_DAYS * DAY, size=n)
        queries, seen = [], []
        for h in histories:
            rows_h = [pos[v] for v in h if pos.get(v, n) < n]
            if rows_h:
                q = vecs[rows_h].mean(axis=0)
                queries.append(q / np.linalg.norm(q))
                seen.append({ids[j] for j in rows_h})
        since = T_END - FRESH_DAYS * DAY
        cases = {"seen": None, "seen+fresh": since}
        with tempfile.TemporaryDirectory(prefix="bench-ann-") as tmp:
            s = settings.model_copy(update={"path": tmp, "backend": "edge", "hnsw_min_points": 1})
            with VideoIndex(s, dim=real.shape[1]) as index:
                index.upsert_many(ids, vecs, [{"published_at": float(t)} for t in published])
                exact: dict[str, tuple[float, list[set[str]]]] = {}
                for case, cut in cases.items():
                    exact[case] = _answers(index, queries, seen, cut)
                t = time.perf_counter()
                index.optimize()
                built = time.perf_counter() - t
                print(f"{n:>7}  HNSW build (m={s.hnsw_m}, ef_construct={s.hnsw_ef_construct}) "
                      f"{built:.1f} s, {n / built:,.0f} points/s", flush=True)  # fmt: skip
                for case, cut in cases.items():
                    ms, found = _answers(index, queries, seen, cut)
                    ex_ms, truth = exact[case]
                    recall = statistics.mean(
                        len(a & b) / len(b) for a, b in zip(found, truth, strict=True) if b
                    )
                    rows.append((n, case, recall, ex_ms, ms))
                    print(f"{n:>7}  {case:<11} recall@{ANN_LIMIT} {recall:.4f}  exact "
                          f"{ex_ms:6.2f} ms  hnsw(ef={s.hnsw_ef}) {ms:6.2f} ms  "
                          f"{ex_ms / ms:4.1f}x", flush=True)  # fmt: skip
    return rows


def ann_rows(
    log: str, sizes: list[int], encoder: str, cache_dir: str, queries: int = 200
) -> list[Row]:
    """The ``index`` section of ``vidrec bench``: ``bench_ann`` on ``log``'s videos.

    Their vectors are cached in ``cache_dir`` under the log's name, size and encoder.
    """
    st = os.stat(log)
    tag = f"{os.path.basename(log).split('.')[0]}-{st.st_size}-{encoder}"
    cache = os.path.join(cache_dir, f"ann-vectors-{tag}.npz")
    settings = IndexSettings()
    rows = []
    for n, case, recall, ex_ms, ms in bench_ann(sizes, log, cache, queries, settings, encoder):
        rows.append(
            Row("index", f"HNSW recall@{ANN_LIMIT} vs exact, {case} filter, {n:,} videos",
                f"{recall:.4f}",
                f"edge, m {settings.hnsw_m}, ef {settings.hnsw_ef}; {ms:.2f} ms per search vs "
                f"exact {ex_ms:.2f} ms; {encoder} vectors of the log's videos, grown by noisy "
                f"copies; queries: users' mean of latest {HISTORY}, those excluded")
        )  # fmt: skip
    return rows


def _answers(
    index: VideoIndex, queries: list[np.ndarray], seen: list[set[str]], since: float | None
) -> tuple[float, list[set[str]]]:
    """Median ms per search and the top-``ANN_LIMIT`` id sets, one per query."""
    out = []
    times = []
    for q, ex in zip(queries, seen, strict=True):
        t = time.perf_counter()
        hits = index.search(q, ANN_LIMIT, ex, since)
        times.append((time.perf_counter() - t) * 1000.0)
        out.append({v for v, _ in hits})
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="queries per measurement")
    parser.add_argument("--local-max", type=int, default=10_000, help="skip local above this")
    parser.add_argument(
        "--ann-log",
        help="a vidrec JSON-lines log (.gz fine): measure HNSW recall@50 on its videos' MiniLM "
        "vectors (grown to --sizes) instead of the edge/local table",
    )
    parser.add_argument(
        "--ann-cache", default=".vidrec/bench/ann-vectors.npz", help="where --ann-log's vectors go"
    )
    args = parser.parse_args()
    if args.ann_log:
        print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs", flush=True)
        bench_ann(args.sizes, args.ann_log, args.ann_cache, args.queries, IndexSettings())
        return 0
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
