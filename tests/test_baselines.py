"""The independent baselines and the evaluator's stream halves, on tiny hand-made logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import ForgetUser, Recommendations, RecommendedItem, UserEvent, VideoPublished
from streams.cli.evaluate import format_table, run_systems
from streams.wire.eventlog import write_log
from workers.baselines import ItemKNN, OnlineMF, Popularity, make_baseline
from workers.evaluation import Evaluator
from workers.inprocess import drive, make_engine
from workers.settings import EngineSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def video(vid: str) -> VideoPublished:
    return VideoPublished(video_id=vid, title=vid, published_at=T0 - timedelta(days=30))


class Events:
    """Makes user events with unique ids and increasing times."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, user: str, vid: str, type: str = "watch") -> UserEvent:
        self.n += 1
        return UserEvent(
            event_id=f"e{self.n}",
            user_id=user,
            video_id=vid,
            type=type,
            ts=T0 + timedelta(minutes=self.n),
        )


def ids(recs: Recommendations | None) -> list[str]:
    assert recs is not None
    return [it.video_id for it in recs.items]


def test_item_knn_recommends_the_planted_co_watched_item_and_never_a_seen_one():
    ev = Events()
    log: list = [video(f"v{i}") for i in range(12)]
    # v0 and v7 go together; every user also watches some filler that is more popular than v7
    for u in range(6):
        log += [ev(f"u{u}", "v0"), ev(f"u{u}", "v7")]
        log += [ev(f"u{u}", f"v{1 + (u + j) % 5}") for j in range(2)]
    log += [ev(f"w{u}", "v3") for u in range(8)]  # v3 popular with users who never saw v0
    knn = ItemKNN(k=5)
    seen: dict[str, set[str]] = {}
    lists = []

    def check(recs: Recommendations) -> None:
        assert not set(ids(recs)) & seen[recs.user_id]
        lists.append(recs)

    for msg in log:
        if isinstance(msg, UserEvent):
            seen.setdefault(msg.user_id, set()).add(msg.video_id)
        drive([msg], knn, on_recommendations=check)
    assert len(lists) == sum(isinstance(m, UserEvent) for m in log)
    first = ids(knn.on_event(ev("new", "v0")))
    assert first[0] == "v7"
    assert "v0" not in first
    assert knn.on_event(UserEvent(**{**ev("new", "v0").model_dump(), "event_id": "e1"})) is None


def random_log(seed: int, users: int = 15, items: int = 20, n: int = 150) -> list:
    rng = np.random.default_rng(seed)
    ev = Events()
    log: list = [video(f"v{i}") for i in range(items)]
    types = ["watch", "play", "like", "impression", "skip"]
    log += [
        ev(f"u{rng.integers(users)}", f"v{rng.integers(items)}", types[rng.integers(5)])
        for _ in range(n)
    ]
    return log


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_item_knn_cosine_equals_brute_force(seed):
    log = random_log(seed)
    knn = ItemKNN(last=5)
    drive(log, knn)
    vids = [f"v{i}" for i in range(20)]
    users = sorted({m.user_id for m in log if isinstance(m, UserEvent)})
    positive = {"watch", "play", "like"}
    b = np.zeros((len(users), len(vids)))
    history: dict[str, list[str]] = {}
    for m in log:
        if isinstance(m, UserEvent) and m.type in positive:
            b[users.index(m.user_id), vids.index(m.video_id)] = 1.0
            h = history.setdefault(m.user_id, [])
            if m.video_id in h:
                h.remove(m.video_id)
            h.append(m.video_id)
    co = b.T @ b
    n = np.diag(co).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.nan_to_num(co / np.sqrt(np.outer(n, n)))
    np.fill_diagonal(cos, 0.0)
    order = [knn.index[v] for v in vids]
    got = knn.similarity(np.array(order))[:, order]
    np.fill_diagonal(got, 0.0)
    np.testing.assert_allclose(got, cos, atol=1e-12)
    for u, h in history.items():
        last = [vids.index(v) for v in h[-5:]]
        want = cos[last].sum(axis=0)
        rec = knn.top(u, 20)
        unseen = [i for i in range(len(vids)) if vids[i] not in h]
        assert sorted(vids[i] for i in unseen) == sorted(knn.ids[i] for i in rec[0])
        got_scores = dict(zip((knn.ids[i] for i in rec[0]), rec[1], strict=True))
        for i in unseen:
            assert got_scores[vids[i]] == pytest.approx(want[i], abs=1e-12)


def planted_groups(per_user: int = 10, users: int = 40, items: int = 40, seed: int = 0) -> list:
    """Users of group g (user index % 2) only watch items of group g (item index % 2)."""
    rng = np.random.default_rng(seed)
    ev = Events()
    log: list = [video(f"v{i}") for i in range(items)]
    for _ in range(per_user):
        for u in range(users):
            g = u % 2
            log.append(ev(f"u{u}", f"v{2 * rng.integers(items // 2) + g}"))
    return log


def test_online_mf_learns_a_planted_signal():
    log = planted_groups(per_user=20)
    mf, ev = OnlineMF(k=10, seed=3), Evaluator()
    drive(log, mf, evaluator=ev)
    blind = Evaluator()
    drive(log, Popularity(k=10), evaluator=blind)  # knows no group: as good as a blind list
    margins, own_in_top = [], 0
    for u in range(40):
        s = mf.scores(f"u{u}")
        own = [mf.index[f"v{i}"] for i in range(40) if i % 2 == u % 2]
        other = [mf.index[f"v{i}"] for i in range(40) if i % 2 != u % 2]
        margins.append(s[own].mean() - s[other].mean())
        own_in_top += sum(int(v[1:]) % 2 == u % 2 for v in ids(mf.recommend(f"u{u}", 3)))
    assert min(margins) > 0
    assert own_in_top >= 0.9 * 40 * 3
    assert ev.report()["hr@10"] > blind.report()["hr@10"] + 0.1


def test_online_mf_is_seeded_and_scoring_creates_no_user():
    a, b = OnlineMF(seed=5), OnlineMF(seed=5)
    log = planted_groups(per_user=3)
    drive(log, a)
    drive(log, b)
    assert ids(a.recommend("u3")) == ids(b.recommend("u3"))
    n = len(a.model.u_latents)
    a.recommend("stranger")
    assert len(a.model.u_latents) == n
    a.on_forget(ForgetUser(user_id="u3", ts=T0))
    assert "u3" not in a.model.u_latents and "u3" not in a.seen
    with pytest.raises(ValueError, match="sampling"):
        OnlineMF(sampling="zipf")


def test_popularity_counts_positive_events_and_breaks_ties_by_arrival():
    ev = Events()
    pop = Popularity(k=4)
    drive([video("a"), video("b"), video("c"), video("d")], pop)
    for user, vid, type in [("x", "c", "watch"), ("y", "c", "like"), ("x", "d", "skip")]:
        pop.on_event(ev(user, vid, type))
    # c has two positive events; a, b, d none (a skip is not one): ties in order of arrival
    assert ids(pop.recommend("z")) == ["c", "a", "b", "d"]
    assert ids(pop.recommend("x")) == ["a", "b", "d"]


def test_evaluator_halves_last20_and_curve_on_known_ranks():
    """Twenty user events, one a position; ranks planted in the list shown before each one."""
    # position -> rank of the target in the list shown (None: not in it; "skip": not a target)
    plan: list[int | str | None] = [
        0, 3, None, 12, "skip", 9, 1, None, 0, 15,
        2, None, "skip", 10, 4, 0, None, 7, 19, 5,
    ]  # fmt: skip
    ev = Evaluator(ks=(10, 20))
    filler = [f"f{j}" for j in range(20)]
    for pos, r in enumerate(plan):
        vid = f"t{pos}"
        if r == "skip":
            ev.on_event(UserEvent(event_id=f"e{pos}", user_id="u", video_id=vid, type="skip",
                                  ts=T0 + timedelta(minutes=pos)))  # fmt: skip
            continue
        shown = list(filler)
        if r is not None:
            shown[r] = vid
        ev.on_recommendations(
            Recommendations(
                user_id="u",
                items=[RecommendedItem(video_id=v, score=1.0) for v in shown],
                generated_at=T0,
            )
        )
        ev.on_event(UserEvent(event_id=f"e{pos}", user_id="u", video_id=vid, type="watch",
                              ts=T0 + timedelta(minutes=pos)))  # fmt: skip
    rep = ev.report()

    def expect(lo: int, hi: int, k: int) -> tuple[int, float, float]:
        ranks = [r for r in plan[lo:hi] if r != "skip"]
        hits = [r for r in ranks if r is not None and r < k]
        ndcg = sum(1 / np.log2(r + 2) for r in hits)
        return len(ranks), len(hits) / len(ranks), ndcg / len(ranks)

    for part, (lo, hi) in {"h1": (0, 10), "h2": (10, 20), "last20": (16, 20)}.items():
        for k in (10, 20):
            n, hr, ndcg = expect(lo, hi, k)
            assert rep[f"{part}_events"] == n
            assert rep[f"{part}_hr@{k}"] == pytest.approx(hr)
            assert rep[f"{part}_ndcg@{k}"] == pytest.approx(ndcg)
    assert rep["h1_events"] + rep["h2_events"] == rep["events"] == 18
    assert rep["h2_hr@10"] == pytest.approx(5 / 9)  # 2, 4, 0, 7, 5 of nine targets
    curve = rep["curve_hr@10"]
    assert curve == pytest.approx([expect(2 * t, 2 * t + 2, 10)[1] for t in range(10)])
    assert curve[:3] == pytest.approx([1.0, 0.0, 1.0])


def test_evaluate_baselines_runs_the_independent_systems_without_an_encoder(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, planted_groups(per_user=4))
    res = run_systems(str(path), ("item-knn", "online-mf", "popularity"))
    assert set(res) == {"item-knn", "online-mf", "popularity"}
    for r in res.values():
        assert r["events"] == r["h1_events"] + r["h2_events"] > 0
        assert len(r["curve_hr@10"]) == 10
    assert res["item-knn"]["hr@10"] > res["popularity"]["hr@10"]
    table = format_table(res)
    assert "2nd half HR@10" in table and "| item-knn |" in table


def test_make_engine_builds_the_independent_baselines_by_name():
    for name, cls in (("item-knn", ItemKNN), ("online-mf", OnlineMF), ("popularity", Popularity)):
        b = make_engine(name, EngineSettings(k=7), None, lambda: None)
        assert isinstance(b, cls) and b.k == 7
        assert isinstance(make_baseline(name), cls)


def test_the_evaluator_counts_lists_that_hold_a_watched_video():
    from datetime import UTC, datetime

    from schemas import Recommendations, UserEvent
    from workers.evaluation import Evaluator

    t = datetime(2026, 1, 1, tzinfo=UTC)
    ev = Evaluator()

    def recs(ids: list[str]) -> Recommendations:
        items = [{"video_id": v, "score": 1.0, "sources": {}} for v in ids]
        return Recommendations(user_id="u", items=items, generated_at=t, latency_ms=0.0)

    ev.on_event(UserEvent(event_id="e1", user_id="u", video_id="a", type="watch", ts=t))
    ev.on_recommendations(recs(["b", "c"]))
    ev.on_recommendations(recs(["c", "a"]))  # "a" was watched
    ev.on_event(UserEvent(event_id="e2", user_id="u", video_id="b", type="skip", ts=t))
    ev.on_recommendations(recs(["b"]))  # a skip is not a watch
    r = ev.report()
    assert r["lists"] == 3 and r["lists_with_seen"] == 1
