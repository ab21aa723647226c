"""Live quality (``workers.live.LiveQuality``) and the engine's hook that feeds it."""

from __future__ import annotations

import math
import random
from array import array
from datetime import timedelta

import pytest
from test_engine import T0, planted_log

from schemas import UserEvent
from workers.evaluation import Evaluator
from workers.inprocess import drive
from workers.live import LiveQuality


def brute(trials: list[tuple[list[str], str]], k: int = 10) -> tuple[float, float]:
    hits, gain = 0, 0.0
    for shown, pick in trials:
        head = shown[:k]
        if pick in head:
            hits += 1
            gain += 1.0 / math.log2(head.index(pick) + 2)
    return hits / len(trials), gain / len(trials)


def test_the_window_slides_and_the_totals_keep_everything() -> None:
    live = LiveQuality(window=3)
    assert live.get() == (None, None, 0) and live.totals() == (None, None, 0)
    shown = ["a", "b", "c"]
    for pick in ["a", "x", "x", "b"]:  # hit at 0, miss, miss, hit at 1
        live.learn_one(shown, pick)
    hr, ndcg, n = live.get()
    assert n == 3  # the first trial (a hit at place 0) has left the window
    assert hr == pytest.approx(1 / 3)
    assert ndcg == pytest.approx((1 / math.log2(3)) / 3)
    hr_all, ndcg_all, n_all = live.totals()
    assert n_all == 4 and hr_all == pytest.approx(2 / 4)
    assert ndcg_all == pytest.approx((1.0 + 1 / math.log2(3)) / 4)


def test_window_figures_equal_a_brute_force_on_random_lists() -> None:
    rng = random.Random(7)
    items = [f"v{i}" for i in range(40)]
    live = LiveQuality(window=50)
    trials = []
    for _ in range(700):
        shown = rng.sample(items, rng.randint(0, 20))
        pick = rng.choice(items)
        rank = live.learn_one(shown, pick)
        assert rank == (shown.index(pick) if pick in shown[:10] else None)
        trials.append((shown, pick))
    hr, ndcg, n = live.get()
    want_hr, want_ndcg = brute(trials[-50:])
    assert n == 50
    assert hr == pytest.approx(want_hr, abs=1e-9) and ndcg == pytest.approx(want_ndcg, abs=1e-9)
    all_hr, all_ndcg = brute(trials)
    assert live.totals() == (pytest.approx(all_hr), pytest.approx(all_ndcg), 700)


def test_only_the_first_k_places_count_and_arrays_of_indices_work() -> None:
    live = LiveQuality(window=10, k=10)
    shown = array("i", range(50))  # the engine's head of the ranking: item indices
    assert live.learn_one(shown, 9) == 9
    assert live.learn_one(shown, 10) is None  # 11th place: published, but beyond HR@10
    hr, ndcg, n = live.get()
    assert (n, hr) == (2, 0.5) and ndcg == pytest.approx(0.5 / math.log2(11))
    with pytest.raises(ValueError, match="window"):
        LiveQuality(window=0)


def test_the_engine_scores_a_new_positive_pick_against_the_list_shown_before(make_engine):
    eng = make_engine()
    drive(planted_log(), eng)
    before = eng.live.totals()
    st = eng.users["u0"]
    pick = st.last_recs[3]
    vid = eng.catalog.ids[pick]
    n = 1000

    def event(video_id: str, kind: str) -> UserEvent:
        nonlocal n
        n += 1
        return UserEvent(
            event_id=f"x{n}", user_id="u0", video_id=video_id, type=kind, ts=T0 + timedelta(days=1)
        )

    seen_vid = eng.history_of("u0")[2][0]
    eng.on_event(event(seen_vid, "play"))  # a video already watched: never in a list, no trial
    eng.on_event(event(eng.catalog.ids[eng.users["u0"].last_recs[0]], "skip"))  # not positive
    assert eng.live.totals()[2] == before[2]
    shown = list(eng.users["u0"].last_recs[:10])
    place = shown.index(pick) if pick in shown else None
    eng.on_event(event(vid, "like"))
    hr, ndcg, trials = eng.live.totals()
    assert trials == before[2] + 1
    gain = 0.0 if place is None else 1.0 / math.log2(place + 2)
    assert hr * trials == pytest.approx(before[0] * before[2] + (place is not None))
    assert ndcg * trials == pytest.approx(before[1] * before[2] + gain)


def test_on_a_replay_live_quality_counts_what_the_evaluation_counts(make_engine):
    """Plays and further actions on the video just played: the engine's live totals equal the
    prequential evaluation of the same replay (both count a positive event on a video the user
    has not acted on, against the list published after the user's previous event)."""
    log = []
    for m in planted_log(per_user=10):
        log.append(m)
        if isinstance(m, UserEvent) and int(m.event_id[1:]) % 4 == 0:
            log.append(m.model_copy(update={"event_id": f"c{m.event_id}", "type": "complete"}))
    eng = make_engine()
    ev = Evaluator()
    drive(log, eng, evaluator=ev)
    report = ev.report()
    hr, ndcg, trials = eng.live.totals()
    assert trials == report["events"] > 50
    assert hr == pytest.approx(report["hr@10"]) and ndcg == pytest.approx(report["ndcg@10"])
    assert report["hr@10"] > 0  # the planted signal is found: the comparison is not all misses


def test_a_list_shorter_than_ten_scores_only_what_was_published(make_engine):
    eng = make_engine(k=3)  # the engine still remembers the head of its ranking (fusion_pool)
    drive(planted_log(), eng)
    st = eng.users["u1"]
    assert len(st.last_recs) > 3
    before = eng.live.totals()
    vid = eng.catalog.ids[st.last_recs[4]]  # ranked fifth: never shown
    eng.on_event(UserEvent(event_id="late", user_id="u1", video_id=vid, type="watch",
                           ts=T0 + timedelta(days=1)))  # fmt: skip
    hr, _, trials = eng.live.totals()
    assert trials == before[2] + 1 and hr * trials == pytest.approx(before[0] * before[2])
