"""The compiled kernels (``workers.kernels``) against the numpy code they replaced.

Co-occurrence is checked end to end: the same deltas go into the arena-backed model and into
the numpy reference (``ref_cooc``, the pre-kernel class verbatim); rows, totals, scores and
snapshots must match, exactly where the arithmetic is the same and to rounding elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from ref_cooc import CoOccurrence as NumpyCoOccurrence

from workers import kernels
from workers.cooc import CoOccurrence
from workers.models import Observation
from workers.ranker import FEATURES, RankerConfig, featurise


def _rows(model: CoOccurrence | NumpyCoOccurrence) -> dict[int, dict[int, float]]:
    return {int(a): row for a, row in model.to_state()["nb"].items() if row}


def _stream(rng: np.random.Generator, n_items: int, n_events: int, hist_len: int = 12):
    """Observations of users drawing from a skewed catalogue (real-shaped: a few hot items)."""
    users: dict[int, list[tuple[int, float, float]]] = {}
    ts = 1_000.0
    for _ in range(n_events):
        u = int(rng.integers(0, 40))
        item = int(min(rng.zipf(1.3), n_items) - 1)
        ts += float(rng.exponential(300.0))
        w = float(rng.choice([1.0, 0.5, 2.0, 3.0]))
        hist = users.setdefault(u, [])
        yield Observation(u, item, ts, w, list(hist))
        hist.insert(0, (item, ts, w))
        del hist[hist_len:]


def _both(**params):
    return CoOccurrence(**params), NumpyCoOccurrence(**params)


@pytest.mark.parametrize("topk", [3, 20, 100])
def test_cooc_learning_matches_the_numpy_reference(topk: int) -> None:
    rng = np.random.default_rng(topk)
    fast, ref = _both(window=8, topk=topk, half_life_s=2 * 86400.0)
    for obs in _stream(rng, 300, 1500):
        d = ref.deltas_one(obs)
        assert fast.deltas_one(obs) == d
        fast.apply_many(d)
        ref.apply_many(d)
    got, want = _rows(fast), _rows(ref)
    assert len(fast) == len(ref) == len(want)
    # trimming keeps the topk strongest; rows whose cut fell on equal counts may keep another
    # of the tied neighbours, so compare rows whose kept counts agree as multisets
    same = [a for a in want if sorted(got[a].values()) == sorted(want[a].values())]
    assert len(same) >= 0.98 * len(want)
    for a in same:
        if got[a] != want[a]:
            assert topk <= 20  # only a tie at the cut can swap a key
    n = len(ref._total)
    np.testing.assert_array_equal(fast._total[:n], ref._total)
    assert not fast._total[n:].any()


def test_cooc_scores_equal_the_numpy_reference_exactly() -> None:
    rng = np.random.default_rng(7)
    fast, ref = _both(window=10, topk=1000)  # no trimming: identical rows
    obs_list = list(_stream(rng, 500, 3000))
    for obs in obs_list:
        d = ref.deltas_one(obs)
        fast.apply_many(d)
        ref.apply_many(d)
    assert _rows(fast) == _rows(ref)
    for obs in obs_list[-300:]:
        k1, s1 = fast.score_history_arrays(obs.history)
        k0, s0 = ref.score_history_arrays(obs.history)
        np.testing.assert_array_equal(k1, k0)
        np.testing.assert_array_equal(s1, s0)  # same arithmetic, same summation order
        items = rng.integers(0, 520, 60)
        np.testing.assert_array_equal(fast.score_many(obs, items), ref.score_many(obs, items))
        assert fast.score_history(obs.history, 15) == ref.score_history(obs.history, 15)
    for a in range(0, 500, 37):
        assert fast.neighbours(a) == ref.neighbours(a)
        assert fast.count(a, 3, 9e3) == ref.count(a, 3, 9e3)
    # the scratch is left zeroed: a second call gives the same answer
    k1, s1 = fast.score_history_arrays(obs_list[-1].history)
    k2, s2 = fast.score_history_arrays(obs_list[-1].history)
    np.testing.assert_array_equal(s1, s2)


def test_cooc_edge_cases_match() -> None:
    fast, ref = _both(window=3, topk=2)
    for m in (fast, ref):
        assert m.score_history_arrays([])[0].shape == (0,)
        assert m.score_history_arrays([(5, 0.0, 1.0)])[0].shape == (0,)  # unknown item
        m.apply_many([])
        m.apply_many([(4, 9, 1.0, 10.0), (4, 9, -1.0, 10.0)])  # cancels within one call
        m.apply_many([(2, 1, -1.0, 10.0)])  # subtracting what is not there
    assert len(fast) == len(ref) == 0
    for m in (fast, ref):
        m.apply_many([(1, 7, 1.0, 10.0), (1, 3, 2.0, 10.0), (1, 5, 0.5, 10.0)])
        m.apply_many([(1, 2, 0.7, 10.0), (1, 8, 3.0, 10.0)])  # 5 > 2 * topk: trim to 2
        m.apply_many([(1, 3, -2.0, 10.0)])  # removal by subtraction
        m.apply_many([(60_000, 1, 1.0, 10.0)])  # a far id grows the arrays
    assert _rows(fast) == _rows(ref)
    assert len(fast) == len(ref) == 2
    hist = [(1, 10.0, 1.0), (60_000, 10.0, 5.0), (1, 10.0, 1.0)]  # a rewatched item counts twice
    for got, want in zip(
        fast.score_history_arrays(hist), ref.score_history_arrays(hist), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_cooc_rebase_and_arena_compaction_keep_the_rows() -> None:
    rng = np.random.default_rng(3)
    fast, ref = _both(window=5, topk=4, half_life_s=3600.0)  # rebases in the stream
    for obs in _stream(rng, 80, 4000):
        d = ref.deltas_one(obs)
        fast.apply_many(d)
        ref.apply_many(d)
    got, want = _rows(fast), _rows(ref)
    assert got.keys() == want.keys()
    for a in want:
        g, w = sorted(got[a].values()), sorted(want[a].values())
        np.testing.assert_allclose(g, w, rtol=1e-12)
    assert fast._used - fast._dead <= 2 * 2 * fast.topk * (len(fast._start))


def test_cooc_snapshot_formats_read_both_ways() -> None:
    rng = np.random.default_rng(5)
    fast, ref = _both(window=6, topk=50)
    obs_list = list(_stream(rng, 200, 800))
    for obs in obs_list:
        d = ref.deltas_one(obs)
        fast.apply_many(d)
        ref.apply_many(d)
    from_ref = CoOccurrence.from_state(ref.to_state())  # an old snapshot reads
    back = NumpyCoOccurrence.from_state(fast.to_state())  # and a new one reads the old way
    assert _rows(from_ref) == _rows(ref) == _rows(back)
    for obs in obs_list[-50:]:
        for got, want in zip(
            from_ref.score_history_arrays(obs.history),
            ref.score_history_arrays(obs.history),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
    from_ref.apply_many(ref.deltas_one(obs_list[0]))  # a packed row grows by moving
    ref.apply_many(ref.deltas_one(obs_list[0]))
    assert _rows(from_ref) == _rows(ref)


def _reference_top(scores: np.ndarray, n: int) -> set[int]:
    n = min(n, len(scores))
    if n == 0:
        return set()
    top = np.argpartition(scores, len(scores) - n)[len(scores) - n :]
    return set(top[np.isfinite(scores[top])].tolist())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_finite_equals_argpartition(dtype) -> None:
    rng = np.random.default_rng(11)
    for size, n in [(0, 5), (1, 1), (5, 0), (7, 20), (100, 20), (10_000, 50), (10_000, 200)]:
        s = rng.standard_normal(size).astype(dtype)
        if size > 3:
            s[rng.integers(0, size, size // 3)] = -np.inf
            s[0] = np.nan
        got = kernels.top_finite(s, n)
        assert set(got.tolist()) == _reference_top(s, n)
        assert len(got) == len(set(got.tolist()))
    ties = np.array([1.0, 2.0, 2.0, 2.0, 0.5], dtype=dtype)
    assert sorted(kernels.top_finite(ties, 2).tolist()) == [1, 2]  # the earlier of equals
    assert kernels.top_finite(np.full(4, -np.inf, dtype=dtype), 3).shape == (0,)


def _featurise_numpy(items, *, now, cooc, profile, vectors, published_at, mf, popular, cfg, seq):
    """``workers.ranker.featurise`` as it was in numpy (the reference)."""
    n = len(items)
    f = np.zeros((n, len(FEATURES)), dtype=np.float32)
    if n == 0:
        return f
    keys, vals = cooc
    if len(keys):
        pos = np.minimum(np.searchsorted(keys, items), len(keys) - 1)
        f[:, 0] = np.where(keys[pos] == items, vals[pos], 0.0)
    if profile is not None:
        f[:, 1] = vectors[items] @ profile
    f[:, 2] = np.tanh(mf)
    f[:, 3] = popular
    age = np.maximum(0.0, now - published_at[items])
    f[:, 4] = np.exp2(-age / cfg.recent_half_life_s)
    fresh = age < cfg.fresh_s
    f[:, 5] = fresh * np.maximum(f[:, 1], 0.0)
    f[:, 6] = popular * np.maximum(f[:, 1], 0.0)
    if seq is not None:
        f[:, 7] = seq
    return f


@pytest.mark.parametrize("n_items", [0, 1, 37, 400])
@pytest.mark.parametrize("with_profile", [True, False])
@pytest.mark.parametrize("with_seq", [True, False])
def test_featurise_equals_the_numpy_reference(n_items, with_profile, with_seq) -> None:
    rng = np.random.default_rng(n_items + 2 * with_profile + with_seq)
    cat, d = 2000, 384
    vectors = rng.standard_normal((cat, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[rng.integers(0, cat, 100)] = 0.0  # videos without content
    published_at = rng.uniform(0, 30 * 86400.0, cat)
    items = np.sort(rng.choice(cat, n_items, replace=False)).astype(np.int64)
    keys = np.unique(rng.integers(0, cat, 300)).astype(np.int64)
    cooc = (keys, rng.exponential(1.0, len(keys)))
    profile = vectors[rng.integers(0, cat, 5)].mean(axis=0) if with_profile else None
    kw = dict(
        now=25 * 86400.0,
        cooc=cooc,
        profile=profile,
        vectors=vectors,
        published_at=published_at,
        mf=rng.standard_normal(n_items).astype(np.float32) * 3,
        popular=rng.uniform(0, 1, n_items).astype(np.float32),
        cfg=RankerConfig(),
        seq=rng.standard_normal(n_items).astype(np.float32) if with_seq else None,
    )
    got, want = featurise(items, **kw), _featurise_numpy(items, **kw)
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-7)
    exact = [0, 3, 7]  # copied values: no arithmetic, so bit-equal
    np.testing.assert_array_equal(got[:, exact], want[:, exact])
    # unsorted items (the fusion rows ask in list order) and no co-occurrence at all
    shuffled = rng.permutation(items)
    kw2 = {**kw, "mf": kw["mf"][: len(shuffled)]}
    np.testing.assert_allclose(
        featurise(shuffled, **{**kw2, "cooc": (keys[:0], cooc[1][:0])}),
        _featurise_numpy(shuffled, **{**kw2, "cooc": (keys[:0], cooc[1][:0])}),
        rtol=2e-6,
        atol=2e-7,
    )


def test_factor_top_items_equal_argpartition() -> None:
    from workers.factors import Factors

    rng = np.random.default_rng(2)
    f = Factors(dim=32, content_dim=0)
    for i in range(3000):
        if i % 7:  # some never added: unknown, never returned
            f.add_item(i, key=i)
    f.users["u"] = rng.standard_normal(32).astype(np.float32)
    for n_items, n in [(3000, 50), (10, 50), (0, 5), (1, 1)]:
        scores = f.items[:n_items] @ f.users["u"] + f.bias[:n_items]
        scores = np.where(f._known[:n_items], scores, -np.inf)
        want = _reference_top(scores, n)
        assert set(f.top_items("u", n, n_items).tolist()) == want
        assert {i for i, _ in f.top("u", n, n_items)} == want
    assert f.top_items("nobody", 5, 3000).shape == (0,)


def _fuse_numpy(items, feats, fusion, k, cfg, fresh):
    """``workers.ranker.fuse_and_rank``'s order as it was in numpy and lists (the reference)."""
    scores = fusion.score(feats)
    order = np.argsort(-scores, kind="stable")
    top = list(order[:k])
    if cfg.fresh_slots > 0 and "content" in cfg.sources:
        window = min(cfg.slot_window, k)
        have = sum(bool(fresh[i]) for i in top[:window])
        if have < cfg.fresh_slots:
            in_top = set(top[:window])
            by_content = np.argsort(-feats[:, 1], kind="stable")
            eligible = by_content[
                fresh[by_content] & (feats[by_content, 1] >= cfg.fresh_min_content)
            ]
            extra = [int(i) for i in eligible if i not in in_top][: cfg.fresh_slots - have]
            if extra:
                rest = [i for i in top if i not in extra]
                head = rest[: window - len(extra)]
                top = head + extra + [i for i in rest if i not in head]
                top = top[:k]
    return np.array(top, dtype=np.int64)


@pytest.mark.parametrize("slots", [0, 2, 5, 12])
def test_fuse_and_rank_equals_the_numpy_reference(slots: int) -> None:
    from workers.ranker import Fusion, fuse_and_rank

    rng = np.random.default_rng(slots)
    fusion = Fusion()
    for n, k in [(0, 20), (1, 20), (5, 3), (300, 20), (300, 100), (40, 40)]:
        for trial in range(20):
            cfg = RankerConfig(fresh_slots=slots, slot_window=10 if trial % 2 else 3)
            feats = rng.uniform(-1, 1, (n, len(FEATURES))).astype(np.float32)
            feats[:, :2] = np.round(feats[:, :2], 1)  # ties in score and content
            fresh = rng.uniform(0, 1, n) < (0.05 if trial % 3 else 0.5)
            items = rng.permutation(5000)[:n].astype(np.int64)
            ranked = fuse_and_rank(items, feats, fusion, k, cfg, fresh)
            want = _fuse_numpy(items, feats, fusion, k, cfg, fresh)
            np.testing.assert_array_equal(ranked.items, items[want])
            np.testing.assert_array_equal(ranked.fresh, fresh[want])
            np.testing.assert_array_equal(ranked.scores, fusion.score(feats)[want])
    no_content = RankerConfig(sources=("cooc", "mf"), fresh_slots=2)
    fresh = np.ones(50, dtype=bool)
    feats = rng.uniform(0, 1, (50, len(FEATURES))).astype(np.float32)
    ranked = fuse_and_rank(np.arange(50), feats, fusion, 10, no_content, fresh)
    np.testing.assert_array_equal(
        ranked.items, _fuse_numpy(np.arange(50), feats, fusion, 10, no_content, fresh)
    )


def test_content_profile_equals_the_numpy_reference() -> None:
    from workers.ranker import content_profile

    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((500, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    has = rng.uniform(0, 1, 500) > 0.2
    vectors[~has] = 0.0
    for length in (1, 3, 20):
        hist = [
            (int(i), 0.0, float(w))
            for i, w in zip(rng.integers(0, 500, 30), rng.choice([0.5, 1, 3, 5], 30), strict=True)
        ]
        got = content_profile(vectors, has, hist, length, 0.7)
        idx = [h[0] for h in hist[:length]]
        w = np.array([0.7**p * min(h[2], 3.0) for p, h in enumerate(hist[:length])], np.float32)
        w *= has[idx]
        if not w.any():
            assert got is None
            continue
        prof = w @ vectors[idx]
        np.testing.assert_allclose(got, prof / float(np.linalg.norm(prof)), rtol=1e-5, atol=1e-6)
        assert got.dtype == np.float32
    assert content_profile(vectors, has, [], 20, 0.7) is None
    none = int(np.flatnonzero(~has)[0])
    assert content_profile(vectors, has, [(none, 0.0, 1.0)], 20, 0.7) is None


def test_factor_scores_and_popularity_equal_numpy() -> None:
    from workers.factors import Factors
    from workers.popularity import Popularity

    rng = np.random.default_rng(8)
    f = Factors(dim=32, content_dim=0)
    for i in range(200):
        f.add_item(i, key=i)
    f.bias[:200] = rng.standard_normal(200).astype(np.float32)
    f.users["u"] = rng.standard_normal(32).astype(np.float32)
    items = np.array([0, 5, 199, 250, 10_000, 7], dtype=np.int64)  # some past the matrix
    want = np.zeros(len(items), np.float32)
    ok = items < len(f.items)
    want[ok] = f.items[items[ok]] @ f.users["u"] + f.bias[items[ok]]
    np.testing.assert_allclose(f.score_user("u", items), want, rtol=1e-5, atol=1e-6)
    assert f.score_user("u", items[:0]).shape == (0,)

    pop = Popularity(86400.0)
    pop.apply_many((int(i), 1.0, 1000.0 + t) for t, i in enumerate(rng.zipf(1.5, 500) % 300))
    pop.subtract_many([(3, 50.0, 2000.0)])  # a negative count reads as 0
    items = np.array([0, 3, 1, 299, 400, 7], dtype=np.int64)
    ok = items < len(pop.counts)
    ref = pop._ref()
    want = np.zeros(len(items), np.float32)
    c = np.maximum(pop.counts[items[ok]], 0.0)
    want[ok] = np.log1p(c / ref) / np.log1p(float(pop.counts.max()) / ref)
    np.testing.assert_allclose(pop.normalised(items), want, rtol=1e-6)


def test_mark_seen_keeps_a_sorted_distinct_set() -> None:
    from workers.users import UserState

    st = UserState()
    rng = np.random.default_rng(9)
    want: set[int] = set()
    for i in rng.integers(0, 300, 400).tolist():
        st.ledger.append(i, 0.0, 1.0, 10_000)
        st.mark_seen(i, 10_000)
        want.add(i)
        assert st.seen.dtype == np.int32
    assert st.seen.tolist() == sorted(want)
