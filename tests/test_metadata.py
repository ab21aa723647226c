"""Metadata in the ranking (issue 16): creator, language, length and format tastes per user."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import ForgetUser, UserEvent, VideoPublished
from schemas.messages import Reason, ReasonKind
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.index import VideoIndex
from workers.inprocess import ABLATIONS
from workers.inprocess import make_engine as make_system
from workers.metadata import (
    MAX_CREATORS,
    ItemMeta,
    UserMeta,
    format_code,
    language_code,
)
from workers.ranker import FEATURES, META_FEATURES
from workers.settings import EngineSettings, IndexSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86400.0
HL = 30 * DAY


def vid(
    i: int,
    creator: str | None = None,
    lang: str = "",
    duration: float = 0.0,
    size: tuple[int, int] = (0, 0),
    at: datetime = T0,
    title: str | None = None,
) -> VideoPublished:
    return VideoPublished(
        video_id=f"v{i}",
        title=title or f"video number {i} about thing {i % 7}",
        creator_id=creator,
        language=lang,
        duration_s=duration,
        width=size[0],
        height=size[1],
        published_at=at,
    )


def play(n: int, user: str, video: str, at: datetime, kind: str = "play") -> UserEvent:
    return UserEvent(event_id=f"e{n}", user_id=user, video_id=video, type=kind, ts=at)


def test_codes_normalise_languages_and_formats() -> None:
    assert language_code("en-US") == language_code("EN_gb") == language_code("en") == "en"
    assert language_code("pt-BR") == "pt"
    assert format_code(0, 1080) == 0  # unknown
    assert format_code(1920, 1080) != format_code(1080, 1920)  # landscape vs portrait
    assert format_code(854, 480) != format_code(1920, 1080) != format_code(3840, 2160)


def _items(*videos: VideoPublished) -> ItemMeta:
    m = ItemMeta()
    for i, v in enumerate(videos):
        m.set(i, v)
    return m


def test_shares_follow_the_user_s_events_and_decay() -> None:
    items = _items(vid(0, "A", "en"), vid(1, "B", "es"), vid(2, "C", "en"))
    u = UserMeta()
    for _ in range(3):
        u.learn_one(items.of(0), 1.0, 0.0, HL)
    u.learn_one(items.of(1), 1.0, 0.0, HL)
    cr = u.features(*items.columns(np.arange(3)))[:, 0]
    assert cr[0] > cr[1] > cr[2] == 0.0
    assert cr[0] < 1.0  # shrunk by the prior: a taste is not certainty
    lang = u.features(*items.columns(np.arange(3)))[:, 1]
    assert lang[0] == lang[2] > lang[1] > 0  # A and C are both "en"

    # two half-lives later, one event on B outweighs the three old ones on A
    later = UserMeta()
    for _ in range(3):
        later.learn_one(items.of(0), 1.0, 0.0, HL)
    later.learn_one(items.of(1), 1.0, 2 * HL, HL)
    later.learn_one(items.of(1), 1.0, 2 * HL, HL)
    cr = later.features(*items.columns(np.arange(3)))[:, 0]
    assert cr[1] > cr[0]


def test_rebasing_a_long_stream_keeps_the_shares() -> None:
    items = _items(vid(0, "A"), vid(1, "B"))
    u = UserMeta()
    t = 0.0
    for n in range(400):  # 400 half-lives: past the rebase point of the decay factor
        u.learn_one(items.of(n % 2), 1.0 + (n % 2), t, HL)
        t += HL
    cr = u.features(*items.columns(np.arange(2)))[:, 0]
    assert np.isfinite(cr).all()
    assert cr[1] > cr[0] > 0  # B weighs 2, A 1, equally recent


def test_duration_fit_peaks_at_the_lengths_the_user_watches() -> None:
    items = _items(vid(0, duration=600), vid(1, duration=660), vid(2, duration=3600), vid(3))
    u = UserMeta()
    for _ in range(5):
        u.learn_one(items.of(0), 1.0, 0.0, HL)
    fit = u.features(*items.columns(np.arange(4)))[:, 2]
    assert fit[0] == pytest.approx(1.0, abs=1e-3)
    assert fit[0] > fit[1] > fit[2] > 0
    assert fit[3] == 0.0  # a video of unknown length says nothing


def test_format_share_and_unknown_items() -> None:
    items = _items(vid(0, size=(1080, 1920)), vid(1, size=(1920, 1080)), vid(2))
    u = UserMeta()
    for _ in range(4):
        u.learn_one(items.of(0), 1.0, 0.0, HL)
    u.learn_one(items.of(1), 1.0, 0.0, HL)
    fmt = u.features(*items.columns(np.arange(3)))[:, 3]
    assert fmt[0] > fmt[1] > fmt[2] == 0.0
    # an item index beyond the described ones (known only from events) is all unknown
    assert not u.features(*items.columns(np.array([10])))[0, [0, 1, 3]].any()


def test_creators_held_per_user_are_capped() -> None:
    videos = [vid(i, f"c{i}") for i in range(MAX_CREATORS + 10)]
    items = _items(*videos)
    u = UserMeta()
    for i in range(len(videos)):
        u.learn_one(items.of(i), 1.0 + i, float(i), HL)
    assert len(u.creators) == MAX_CREATORS
    # the heaviest (latest) creators stayed
    assert items.creators.code(f"c{len(videos) - 1}") in u.creators


def _engine(**settings: object) -> Engine:
    enc = HashingEncoder()
    return Engine(
        EngineSettings(**{"k": 10, **settings}), enc, VideoIndex(IndexSettings(), enc.dim)
    )


def _follower_log(engine: Engine) -> None:
    """u1 watches creator "chef"'s cooking videos; many other videos are about other things."""
    old = T0 - timedelta(days=3)
    videos = [vid(i, "chef", "en", 600, (1920, 1080), old, f"pasta recipe {i}") for i in range(6)]
    videos += [
        vid(100 + i, f"other{i % 5}", "en", 600, (1920, 1080), old, f"guitar lesson {i}")
        for i in range(40)
    ]
    engine.on_videos(videos)
    n = 0
    for i in range(6):
        n += 1
        engine.on_event(play(n, "u1", f"v{i}", T0 + timedelta(minutes=n)))
    for j in range(30):  # other users make the guitar videos popular
        n += 1
        engine.on_event(play(n, f"x{j % 6}", f"v{100 + j}", T0 + timedelta(minutes=n)))


def test_a_new_video_of_a_creator_the_user_watches_reaches_them() -> None:
    """The cold video shares no words with the user's history: only its creator brings it.
    (Fixed starting weights: what the fusion learns from a log this small is noise.)"""
    for features, expect in ((None, True), ([f for f in FEATURES if f != "creator"], False)):
        enc = HashingEncoder()
        eng = Engine(
            EngineSettings(k=10, fresh_slots=0, fusion_lr=0.0),
            enc,
            VideoIndex(IndexSettings(), enc.dim),
            features=features,
        )
        _follower_log(eng)
        eng.on_video(
            vid(999, "chef", "en", 600, (1920, 1080), T0 + timedelta(hours=2), "zzz qqq xyzzy")
        )
        recs = eng.recommend("u1")
        ids = [it.video_id for it in recs.items]
        assert ("v999" in ids) is expect, ids


def test_metadata_features_enter_the_ranking_and_are_learned_with_the_rest() -> None:
    eng = _engine()
    _follower_log(eng)
    st = eng.users["u1"]
    assert st.meta is not None
    items = np.array([eng.catalog.get("v0"), eng.catalog.get("v100")])
    feats = eng._features("u1", st, items)
    at = {f: FEATURES.index(f) for f in META_FEATURES}
    assert feats[0, at["creator"]] > 0 and feats[1, at["creator"]] == 0
    assert feats[0, at["language"]] == feats[1, at["language"]] > 0
    assert feats[0, at["duration"]] > 0.99
    assert all(eng.fusion.mask[at[f]] for f in META_FEATURES)


def test_forget_erases_the_metadata_tastes_and_counts_them() -> None:
    eng = _engine()
    _follower_log(eng)
    receipt = eng.on_forget(ForgetUser(user_id="u1", ts=T0 + timedelta(days=1)))
    assert receipt.erased["creator_stats"] == 1
    assert receipt.erased["language_stats"] == 1
    assert receipt.erased["duration_stats"] == 1
    assert receipt.erased["format_stats"] == 1
    assert eng.users["u1"].meta is None
    assert eng.snapshot_user("u1")["meta"] is None
    # a user never seen: the receipt still names the statistics, at zero
    other = eng.on_forget(ForgetUser(user_id="nobody", ts=T0 + timedelta(days=1)))
    assert other.erased["creator_stats"] == 0


def test_user_snapshot_carries_the_tastes_across_engines_with_other_codes() -> None:
    a = _engine()
    _follower_log(a)
    snap = a.snapshot_user("u1")
    b = _engine()
    # b numbers creators differently: it met other creators first
    b.on_videos([vid(500 + i, f"first{i}", "de", 60, (1080, 1920)) for i in range(3)])
    _follower_log(b)
    b.restore_user("u1", snap)
    ia = np.array([a.catalog.get(v) for v in ("v0", "v100", "v3")])
    ib = np.array([b.catalog.get(v) for v in ("v0", "v100", "v3")])
    fa = a.users["u1"].meta.features(*a.item_meta.columns(ia))
    fb = b.users["u1"].meta.features(*b.item_meta.columns(ib))
    np.testing.assert_allclose(fa, fb, rtol=1e-6)


def test_engine_snapshot_round_trip_keeps_metadata() -> None:
    a = _engine()
    _follower_log(a)
    b = Engine.from_state(a.to_state(), a.encoder, a.index)
    assert [i.video_id for i in a.recommend("u1").items] == [
        i.video_id for i in b.recommend("u1").items
    ]
    assert b.item_meta.creators.names == a.item_meta.creators.names


def test_the_ablation_systems_drop_exactly_their_features() -> None:
    enc = HashingEncoder()
    full = make_system("hybrid", EngineSettings(), enc, lambda: None)
    for name, dropped in ABLATIONS.items():
        eng = make_system(name, EngineSettings(), enc, lambda: None)
        for f, on, was in zip(FEATURES, eng.fusion.mask, full.fusion.mask, strict=True):
            assert bool(on) == (bool(was) and f not in dropped), (name, f)
    no_meta = make_system("hybrid-no-metadata", EngineSettings(), enc, lambda: None)
    assert not no_meta._meta_on and not no_meta._creator_on


def test_a_video_without_metadata_ranks_as_before() -> None:
    """Events on videos with no metadata learn no tastes worth a feature: all columns 0."""
    eng = _engine()
    eng.on_videos([vid(i) for i in range(10)])
    for n in range(5):
        eng.on_event(play(n, "u", f"v{n}", T0 + timedelta(minutes=n)))
    items = np.arange(10)
    feats = eng._features("u", eng.users["u"], items)
    cols = [FEATURES.index(f) for f in META_FEATURES]
    assert not feats[:, cols].any()
    assert math.isclose(eng.users["u"].meta.total, 5.0, rel_tol=1e-3)


def test_an_item_brought_by_its_creator_says_so() -> None:
    enc = HashingEncoder()
    eng = Engine(
        EngineSettings(k=10, fresh_slots=0, fusion_lr=0.0),
        enc,
        VideoIndex(IndexSettings(), enc.dim),
    )
    _follower_log(eng)
    eng.on_video(vid(999, "chef", "en", 600, (1920, 1080), T0 + timedelta(hours=2), "zzz qqq"))
    recs = eng.recommend("u1")
    by_id = {it.video_id: it.reason for it in recs.items}
    reason = by_id["v999"]
    # the micro-batch's ranking gives the same reasons
    batch = eng.publish_many(["u1", "x0"], [None, None], [0.0, 0.0])[0]
    assert [(it.video_id, it.reason) for it in batch.items] == [
        (it.video_id, it.reason) for it in recs.items
    ]
    assert reason.kind == ReasonKind.CREATOR and reason.creator == "chef"
    assert reason.text() == "more from chef, whom you watch"
    # as the JSON says it, validated again: the same reason
    assert Reason.model_validate_json(reason.model_dump_json()) == reason
    # videos of creators the user never watched are not "from a creator you watch"
    assert all(
        r.kind != ReasonKind.CREATOR for v, r in by_id.items() if v.startswith("v1") and v != "v999"
    )


def test_events_centuries_apart_and_items_never_described() -> None:
    """The fuzzer's cases: a jump of thousands of half-lives either way, and a ranking before
    any video was described."""
    items = _items(vid(0, "A"), vid(1, "B"))
    u = UserMeta()
    u.learn_one(items.of(0), 1.0, 0.0, HL)
    u.learn_one(items.of(1), 1.0, 1e13, HL)  # ~3,900 half-lives later: A's weight is gone
    u.learn_one(items.of(0), 1.0, -1e13, HL)  # far before the reference: weighs nothing
    cr = u.features(*items.columns(np.arange(2)))[:, 0]
    assert np.isfinite(cr).all() and cr[1] > 0.4 and cr[0] < 1e-6
    empty = ItemMeta()
    cols = empty.columns(np.array([0, 5]))
    assert not u.features(*cols)[:, [0, 1, 3]].any()
