"""One contract suite over every stateful model, plus model-specific behaviour.

The contract (``workers.models.OnlineModel``, river's ``checks`` habit), run over every model as
it is: scoring never creates state; a snapshot round trip gives identical output; the same
inputs and seed give the same output; the user step plus the item step is ``learn_one``;
learning moves the scores; forgetting a user leaves what a stranger gets.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from workers.cooc import CoOccurrence
from workers.factors import Factors
from workers.models import Observation, OnlineModel
from workers.popularity import Popularity

DAY = 86400.0


def _stream(seed: int = 0, n_users: int = 40, n_items: int = 30, n_events: int = 600):
    """Planted structure: users of group g watch items of group g (items i % 3 == g).

    Each event comes as the engine hands it to a model: with the user's recent items (most
    recent first) and a few sampled negatives.
    """
    rng = np.random.default_rng(seed)
    hist: dict[str, list] = {}
    out = []
    for n in range(n_events):
        u = int(rng.integers(n_users))
        item = int(rng.choice([i for i in range(n_items) if i % 3 == u % 3]))
        ts = 1000.0 + n * 60.0
        h = hist.setdefault(f"u{u}", [])
        negs = [int(j) for j in rng.integers(0, n_items, size=4)]
        out.append(Observation(f"u{u}", item, ts, 1.0, tuple(h[:10]), negs))
        h.insert(0, (item, ts, 1.0))
    return out


def _factors() -> Factors:
    m = Factors(dim=8, lr=0.1, content_dim=0, seed=3)
    for i in range(30):
        m.add_item(i)
    return m


MODELS = {
    "cooc": lambda: CoOccurrence(window=5, topk=20),
    "factors": _factors,
    "popularity": lambda: Popularity(half_life_s=DAY, refresh_every=10),
}
ITEMS = np.arange(30)


def _learn(model: OnlineModel, observations) -> None:
    for obs in observations:
        model.learn_one(obs)


def _query(observations, user: str = "u0") -> Observation:
    """What the model is asked about a user: their last action and history."""
    last = [o for o in observations if o.user == user][-1]
    return Observation(user, None, last.ts, history=((last.item, last.ts, 1.0), *last.history))


@pytest.fixture(params=list(MODELS), ids=str)
def make(request):
    return MODELS[request.param]


def test_every_model_keeps_the_protocol(make):
    assert isinstance(make(), OnlineModel)


def test_scoring_creates_no_state(make):
    model = make()
    obs = _stream()[:200]
    _learn(model, obs)
    snapshot = copy.deepcopy(model.to_state())
    model.score_many(_query(obs), ITEMS)
    stranger = Observation("never-seen-user", None, 0.0, history=((999, 0.0, 1.0),))
    cold = model.score_many(stranger, np.array([0, 1, 999]))
    assert cold.shape == (3,) and np.isfinite(cold).all()
    assert _equal(model.to_state(), snapshot)


def test_snapshot_round_trip_gives_identical_scores(make):
    model = make()
    obs = _stream()
    _learn(model, obs)
    clone = type(model).from_state(copy.deepcopy(model.to_state()))
    q = _query(obs)
    assert model.score_many(q, ITEMS).tolist() == clone.score_many(q, ITEMS).tolist()
    more = _stream(seed=9)[:100]  # and both keep learning identically
    _learn(model, more)
    _learn(clone, more)
    assert model.score_many(q, ITEMS).tolist() == clone.score_many(q, ITEMS).tolist()


def test_same_inputs_same_output(make):
    a, b = make(), make()
    _learn(a, _stream(seed=4))
    _learn(b, _stream(seed=4))
    q = _query(_stream(seed=4))
    assert a.score_many(q, ITEMS).tolist() == b.score_many(q, ITEMS).tolist()


def test_the_two_steps_are_learn_one(make):
    """What a worker does (user step here, item step wherever the deltas land) is learn_one."""
    whole, split = make(), make()
    obs = _stream(seed=5)
    _learn(whole, obs)
    for o in obs:
        split.apply_many(split.deltas_one(o))
    assert _equal(whole.to_state(), split.to_state())


def test_learning_moves_the_scores(make):
    model = make()
    obs = _stream(seed=6)
    q = _query(obs)
    before = model.score_many(q, ITEMS)
    _learn(model, obs)
    assert not np.array_equal(model.score_many(q, ITEMS), before)


def test_forgetting_a_user_leaves_what_a_stranger_gets(make):
    model = make()
    obs = _stream(seed=7)
    _learn(model, obs)
    held = model.forget_user("u0")
    assert held == isinstance(model, Factors)  # only the factors hold anything per user
    alone = Observation("u0", None, 0.0)
    stranger = Observation("nobody", None, 0.0)
    assert model.score_many(alone, ITEMS).tolist() == model.score_many(stranger, ITEMS).tolist()


def test_cooc_learns_planted_neighbours():
    model = CoOccurrence(window=5, topk=20)
    _learn(model, _stream())
    nb = model.neighbours(0)  # group 0
    top = sorted(nb, key=nb.get, reverse=True)[:5]
    assert all(i % 3 == 0 for i in top)


def test_factors_learn_planted_groups():
    model = _factors()
    _learn(model, _stream(n_events=3000))
    s = model.score_user("u0", np.arange(30))  # u0 is in group 0
    own = s[[i for i in range(30) if i % 3 == 0]].mean()
    other = s[[i for i in range(30) if i % 3 != 0]].mean()
    assert own > other + 0.1


def test_cooc_decays_with_time_and_stays_bounded():
    model = CoOccurrence(window=3, topk=4, half_life_s=DAY)
    model.learn_one(Observation("u", 2, 0.0, 1.0, [(1, 0.0, 1.0)]))
    c0 = model.count(1, 2, 0.0)
    assert model.count(1, 2, DAY) == pytest.approx(c0 / 2)
    for j in range(3, 40):
        model.learn_one(Observation("u", j, j * 10.0 + 1, 1.0, [(1, j * 10.0, 1.0)]))
    assert len(model.neighbours(1)) <= 2 * model.topk


def test_cooc_deltas_commute_and_subtract_exactly():
    obs = Observation("u", 3, 60.0, 2.0, [(1, 0.0, 1.0), (2, 0.0, 1.0)])
    deltas = CoOccurrence().deltas_one(obs)
    a, b = CoOccurrence(), CoOccurrence()
    a.apply_many(deltas)
    b.apply_many(list(reversed(deltas)))
    assert a.to_state()["nb"] == b.to_state()["nb"]
    a.apply_many([(x, y, -amt, ts) for x, y, amt, ts in deltas])
    assert all(not row for row in a.to_state()["nb"].values())


def test_cooc_rebase_keeps_relative_counts():
    model = CoOccurrence(half_life_s=1.0)
    model.learn_one(Observation("u", 2, 0.0, 1.0, [(1, 0.0, 1.0)]))
    model.learn_one(Observation("u", 3, 100.0, 1.0, [(1, 100.0, 1.0)]))  # a rebase (2**100)
    assert model.count(1, 3, 100.0) == pytest.approx(1.0)
    assert model.count(1, 2, 100.0) == pytest.approx(2.0**-100, rel=1e-6)


def test_popularity_trending_prefers_recent_views():
    pop = Popularity(half_life_s=DAY, refresh_every=1)
    for _ in range(10):
        pop.learn_one(Observation("u", 0, 0.0))
    for _ in range(3):
        pop.learn_one(Observation("u", 1, 5 * DAY))
    assert pop.trending(2).tolist() == [1, 0]


def test_factors_new_items_start_from_content():
    f = Factors(dim=16, content_dim=8, seed=0)
    base = np.ones(8, dtype=np.float32)
    f.add_item(0, base)
    f.add_item(1, base + 0.01)
    f.add_item(2, -base)
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(f.items[0], f.items[1]) > 0.99
    assert cos(f.items[0], f.items[2]) < -0.99


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def test_cooc_subtracting_one_users_deltas_leaves_the_others():
    mine = CoOccurrence().deltas_one(Observation("a", 3, 60.0, 2.0, [(1, 0.0, 1.0), (2, 0.0, 1)]))
    theirs = CoOccurrence().deltas_one(Observation("b", 3, 90.0, 1.0, [(1, 0.0, 1.0), (4, 0.0, 1)]))
    both, only = CoOccurrence(), CoOccurrence()
    both.apply_many(mine + theirs)
    only.apply_many(theirs)
    both.apply_many([(a, b, -amt, ts) for a, b, amt, ts in mine])
    got, want = both.to_state()["nb"], only.to_state()["nb"]
    assert got.keys() == want.keys()
    for a in want:
        assert got[a].keys() == want[a].keys()
        for b in want[a]:  # counts as seen at one time (the raw units depend on the clock)
            assert both.count(a, b, 90.0) == pytest.approx(only.count(a, b, 90.0), rel=1e-9)
    before = both.to_state()["nb"]
    both.apply_many([(7, 8, -1.0, 100.0), (1, 9, -1.0, 100.0)])  # nothing there: no entry
    assert both.to_state()["nb"] == before and both.count(7, 8, 100.0) == 0.0


def test_cooc_snapshot_round_trip_scores_the_same():
    model = CoOccurrence(window=5, topk=4)
    _learn(model, _stream())
    clone = CoOccurrence.from_state(model.to_state())
    assert clone.to_state()["nb"] == model.to_state()["nb"]
    hist = [(0, 0.0, 1.0), (3, 0.0, 2.0)]
    assert clone.score_history(hist) == model.score_history(hist)
    assert all(len(model.neighbours(i)) <= 8 for i in range(30))


def test_trusted_items_equal_validated_ones_and_serialise_alike():
    from schemas import RecommendedItem, recommended_items

    ids, scores = ["v1", "v2"], [0.75, -0.125]
    sources = [[0.1, 0.2, 0.3, 0.4], [0.0, 1.0, -0.5, 0.25]]  # cooc, content, mf, popular
    fast = recommended_items(ids, scores, sources)
    validated = [
        RecommendedItem.model_validate(
            {
                "video_id": v,
                "score": sc,
                "sources": {"cooc": s[0], "content": s[1], "mf": s[2], "popular": s[3]},
            }  # fmt: skip
        )
        for v, sc, s in zip(ids, scores, sources, strict=True)
    ]
    assert fast == validated
    assert [f.model_dump_json() for f in fast] == [v.model_dump_json() for v in validated]
    assert fast[1].model_fields_set == validated[1].model_fields_set
    assert fast[0].sources.mf == 0.3 and fast[1].sources.content == 1.0


def test_trusted_items_with_reasons_equal_validated_ones_and_serialise_alike():
    from schemas import RecommendedItem, recommended_items
    from schemas.messages import ReasonKind, trusted_reason

    ids, scores = ["v1", "v2", "v3", "v4"], [0.75, -0.125, 0.5, 0.25]
    sources = [[0.1, 0.2, 0.3, 0.4], [0.0, 1.0, -0.5, 0.25], [0, 0.5, 0, 0], [0, 0, 0, 0.9]]
    reasons = [
        {"kind": "watched", "video_id": "h1", "source": "cooc"},
        {"kind": "watched", "video_id": "h2", "source": "content"},
        {"kind": "new_in_topic", "video_id": "h2", "topic": "cooking"},
        {"kind": "trending"},
    ]
    trusted = [
        trusted_reason(ReasonKind(r["kind"]), r.get("video_id"), r.get("source"), r.get("topic"))
        for r in reasons
    ]
    fast = recommended_items(ids, scores, sources, trusted)
    validated = [
        RecommendedItem.model_validate(
            {
                "video_id": v,
                "score": sc,
                "sources": {"cooc": s[0], "content": s[1], "mf": s[2], "popular": s[3]},
                "reason": r,
            }  # fmt: skip
        )
        for v, sc, s, r in zip(ids, scores, sources, reasons, strict=True)
    ]
    assert fast == validated
    assert [f.model_dump_json() for f in fast] == [v.model_dump_json() for v in validated]
    assert [f.model_dump_json(exclude_none=True) for f in fast] == [
        v.model_dump_json(exclude_none=True) for v in validated
    ]
    for f, v in zip(fast, validated, strict=True):
        assert f.model_fields_set == v.model_fields_set
        assert f.reason.model_fields_set == v.reason.model_fields_set
    assert [f.reason.text() for f in fast] == [
        "because you watched h1",
        "because you watched h2",
        "new in cooking, like h2",
        "trending",
    ]
    # and without reasons the item has none, as before
    assert recommended_items(ids[:1], scores[:1], sources[:1], [None])[0].reason is None


def test_fusion_learns_which_feature_the_user_follows_and_round_trips():
    """river's scaler and logistic regression: a user who always picks the item with the most
    co-occurrence, however popular the others are, turns the weights that way, and a snapshot
    ranks the same afterwards."""
    from workers.ranker import FEATURES, Fusion

    rng = np.random.default_rng(0)
    fusion = Fusion(lr=0.05, enabled=("cooc", "popular"), warmup=50)
    ci, pi = FEATURES.index("cooc"), FEATURES.index("popular")
    fusion.w[:] = 0.0
    fusion.w[pi] = 1.0  # starts out trusting popularity
    fusion.init = fusion.w.copy()
    for _ in range(400):
        feats = np.zeros((6, len(FEATURES)), dtype=np.float32)
        feats[:, ci] = rng.exponential(5.0, 6)  # co-occurrence sums: large raw scale
        feats[:, pi] = rng.uniform(0, 1, 6)
        best = int(np.argmax(feats[:, ci]))
        fusion.learn_many(fusion.rows(feats[best], np.delete(feats, best, axis=0)))
    assert fusion.started and fusion.w[ci] > 0 and fusion.w[ci] * 5.0 > fusion.w[pi]
    test = rng.uniform(0, 1, (50, len(FEATURES))).astype(np.float32)
    back = Fusion.from_state(fusion.to_state())
    np.testing.assert_allclose(back.score(test), fusion.score(test), rtol=1e-6)
    assert np.isfinite(fusion.w).all() and (fusion.w[[ci, pi]] != 0).any()


def test_pointwise_factors_learn_planted_groups():

    f = Factors(dim=8, lr=0.1, reg=0.01, content_dim=0, loss="pointwise")
    for i in range(40):
        f.add_item(i, key=i)
    rng = np.random.default_rng(1)
    for _ in range(3000):
        u = int(rng.integers(0, 20))
        group = u % 2  # even users watch even items
        item = int(rng.choice(np.arange(group, 40, 2)))
        negs = [int(j) for j in rng.integers(0, 40, 8)]
        f.learn_one(Observation(f"u{u}", item, 0.0, negatives=negs))
    s = f.score_user("u0", np.arange(40))
    assert s[0::2].mean() > s[1::2].mean() + 0.1  # 0.19 against 0.00 measured
