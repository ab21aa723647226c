"""Replays and redelivery change nothing: a log replayed twice, every event duplicated, or every
video re-published leaves the engine's state and recommendations equal to a single clean pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from schemas import Recommendations, UserEvent, VideoPublished
from streams.wire.eventlog import BadLine, read_log, write_log
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.inprocess import drive
from workers.settings import EngineSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TOPICS = [
    ("pasta", "recipe italian cooking dinner"),
    ("guitar", "music chords lesson acoustic"),
    ("hiking", "mountain trail travel outdoor"),
]
# Mixed actions, so that strengthening in place (play -> complete -> like), negative feedback and
# zero-weight impressions are all replayed too.
TYPES = ["play", "play", "complete", "like", "impression", "skip", "watch", "dislike", "share"]


def _video(i: int, at: datetime) -> VideoPublished:
    name, words = TOPICS[i % 3]
    return VideoPublished(
        video_id=f"v{i}",
        title=f"{name} {words.split()[i % 4]} episode {i}",
        description=f"All about {name}: {words}",
        tags=words.split()[:3],
        published_at=at,
    )


def planted_log(n_videos: int = 45, n_users: int = 9, per_user: int = 14) -> list[Any]:
    """Users of topic ``u % 3`` act on videos of that topic; a third of the videos arrive mid-run,
    and some events name a video before it is published (or one that never is)."""
    early = n_videos * 2 // 3
    log: list[Any] = [_video(i, T0 - timedelta(days=1)) for i in range(early)]
    late = [_video(i, T0 + timedelta(hours=1)) for i in range(early, n_videos)]
    n = 0
    for step in range(per_user):
        if step == per_user // 2:
            log.extend(late)
        for u in range(n_users):
            t = u % 3
            vid = (u * 7 + step * 2) % (n_videos // 3) * 3 + t
            if (u + step) % 11 == 0:
                vid_id = f"ghost{u}"  # never published
            else:
                vid_id = f"v{vid}"
            n += 1
            log.append(
                UserEvent(
                    event_id=f"e{n}",
                    user_id=f"u{u}",
                    video_id=vid_id,
                    type=TYPES[(u + 3 * step) % len(TYPES)],
                    ts=T0 + timedelta(minutes=n),
                )
            )
    return log


def assert_same_state(a: Any, b: Any, path: str = "state") -> None:
    """Deep, exact equality of two ``to_state()`` trees (numpy arrays included)."""
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        assert a.keys() == b.keys(), f"{path}: keys differ: {set(a) ^ set(b)}"
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), path
        assert a.shape == b.shape and a.dtype == b.dtype, f"{path}: {a.shape} vs {b.shape}"
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{path}: arrays differ"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def users_of(log: list[Any]) -> list[str]:
    return sorted({m.user_id for m in log if isinstance(m, UserEvent)})


def run(engine: Engine, log: list[Any]) -> list[Recommendations]:
    published: list[Recommendations] = []
    drive(log, engine, on_recommendations=published.append)
    return published


def assert_same_engine(a: Engine, b: Engine, users: list[str]) -> None:
    assert_same_state(a.to_state(), b.to_state())
    for user in [*users, "nobody"]:
        assert a.recommend(user).items == b.recommend(user).items, user
    assert a.index.count() == b.index.count()


def test_planted_log_exercises_what_replays_must_not_repeat():
    """Guard: the log holds the cases the tests below rely on."""
    log = planted_log()
    events = [m for m in log if isinstance(m, UserEvent)]
    published = {m.video_id for m in log if isinstance(m, VideoPublished)}
    assert {e.type.value for e in events} >= {"play", "like", "skip", "impression", "dislike"}
    assert any(e.video_id not in published for e in events)  # unknown video
    first_event = log.index(events[0])
    assert any(isinstance(m, VideoPublished) for m in log[first_event:])  # videos mid-run
    assert len({e.event_id for e in events}) == len(events)


def test_replaying_the_same_log_twice_equals_one_pass(make_engine, tmp_path: Path):
    log = planted_log()
    path = tmp_path / "log.jsonl"
    write_log(path, log)

    def replay() -> list[Any]:
        msgs = list(read_log(path))
        assert not [m for m in msgs if isinstance(m, BadLine)]
        return msgs

    once, twice = make_engine(), make_engine()
    first = run(once, replay())
    first_b = run(twice, replay())
    stats = drive(replay(), twice)
    n_events = sum(isinstance(m, UserEvent) for m in log)
    assert stats.events == n_events and stats.duplicates == n_events and stats.published == 0
    assert [r.items for r in first] == [r.items for r in first_b]
    assert len(first) == n_events
    assert_same_engine(once, twice, users_of(log))
    # and every replayed event, offered one at a time, is a duplicate
    for m in log:
        if isinstance(m, UserEvent):
            assert twice.on_event(m) is None
    assert_same_engine(once, twice, users_of(log))


def with_duplicated_events(log: list[Any], far: int = 23) -> list[Any]:
    """Every event twice: even-numbered ones right after themselves, odd-numbered ones ``far``
    messages later, and every fifth once more at the very end (redelivery after a long gap)."""
    out: list[Any] = []
    later: dict[int, list[Any]] = {}
    tail: list[Any] = []
    n = 0
    for pos, m in enumerate(log):
        out.append(m)
        if isinstance(m, UserEvent):
            n += 1
            if n % 2 == 0:
                out.append(m.model_copy())
            else:
                later.setdefault(pos + far, []).append(m.model_copy())
            if n % 5 == 0:
                tail.append(m)
        out.extend(later.pop(pos, []))
    for pending in later.values():
        out.extend(pending)
    return out + tail


def test_log_with_every_event_duplicated_equals_the_log_once(make_engine):
    log = planted_log()
    dup = with_duplicated_events(log)
    n_events = sum(isinstance(m, UserEvent) for m in log)
    n_dup = sum(isinstance(m, UserEvent) for m in dup)
    assert n_dup >= 2 * n_events + n_events // 5

    once, doubled = make_engine(), make_engine()
    published_once = run(once, log)
    published_doubled: list[Recommendations] = []
    stats = drive(dup, doubled, on_recommendations=published_doubled.append)
    assert stats.events == n_dup and stats.duplicates == n_dup - n_events
    # the same lists, published at the same points of the stream
    assert [(r.trigger_event_id, r.items) for r in published_doubled] == [
        (r.trigger_event_id, r.items) for r in published_once
    ]
    assert_same_engine(once, doubled, users_of(log))


def test_duplicates_through_the_split_user_and_item_steps_are_dropped_once(make_engine):
    """The streaming path calls ``user_step`` itself: a duplicate yields no deltas at all."""
    log = planted_log()
    once, doubled = make_engine(), make_engine()
    run(once, log)
    run(doubled, log)
    for m in log:
        if isinstance(m, UserEvent):
            assert doubled.user_step(m) is None
    assert_same_engine(once, doubled, users_of(log))


def test_republishing_every_video_changes_nothing(make_engine):
    log = planted_log()
    videos = [m for m in log if isinstance(m, VideoPublished)]
    events = [i for i, m in enumerate(log) if isinstance(m, UserEvent)]
    middle = events[len(events) // 2]
    # each video again right away, again halfway through the events, and once more at the end
    republished: list[Any] = []
    for pos, m in enumerate(log):
        republished.append(m)
        if isinstance(m, VideoPublished):
            republished.append(m.model_copy())
        if pos == middle:
            republished.extend(videos)
    republished.extend(videos)

    once, again = make_engine(), make_engine()
    published_once = run(once, log)
    published_again = run(again, republished)
    assert once.index.count() == again.index.count() == len(videos)
    assert len(again.catalog) == len(once.catalog)
    assert [r.items for r in published_again] == [r.items for r in published_once]
    assert_same_engine(once, again, users_of(log))


def test_republishing_a_video_after_learning_keeps_its_learned_factors(make_engine):
    """Redelivery of a ``VideoPublished`` must not re-blend content into learned item factors."""
    log = planted_log()
    eng = make_engine()
    run(eng, log)
    before = eng.to_state()
    recs_before = {u: eng.recommend(u).items for u in users_of(log)}
    for m in log:
        if isinstance(m, VideoPublished):
            eng.on_video(m)
    assert_same_state(before, eng.to_state())
    assert {u: eng.recommend(u).items for u in users_of(log)} == recs_before


def test_evaluation_scores_a_trigger_with_two_lists_by_its_first(tmp_path: Path) -> None:
    """A worker that crashed after publishing publishes again for the redelivered event: the
    first list is the one the user saw, and the later one must not change any figure, wherever
    it lands in the file."""
    from test_engine import planted_log

    from streams.cli.evaluate import evaluate_files

    log = planted_log(n_videos=30, n_users=6, per_user=6)
    engine = Engine(EngineSettings(k=10), HashingEncoder(), None)
    lists: list[Recommendations] = []
    drive(log, engine, on_recommendations=lists.append)
    write_log(tmp_path / "log.jsonl", log)
    write_log(tmp_path / "once.jsonl", lists)
    once = evaluate_files(str(tmp_path / "log.jsonl"), str(tmp_path / "once.jsonl"))

    def other(r: Recommendations) -> Recommendations:
        return r.model_copy(update={"items": list(reversed(r.items))})

    # lists of several workers interleave: a later trigger's two lists may come before an
    # earlier trigger's list, and a second list may come long after its first
    again = []
    for n in range(0, len(lists) - 1, 2):
        again += [lists[n + 1], other(lists[n + 1]), lists[n]]
    if len(lists) % 2:
        again.append(lists[-1])
    again += [other(r) for r in lists[::4]]
    write_log(tmp_path / "twice.jsonl", again)
    twice = evaluate_files(str(tmp_path / "log.jsonl"), str(tmp_path / "twice.jsonl"))
    assert once["hr@10"] > 0 and once["lists"] == len(lists)
    assert twice == once

    # the reversed lists on their own score differently, so the test can tell them apart
    write_log(tmp_path / "other.jsonl", [other(r) for r in lists])
    assert evaluate_files(str(tmp_path / "log.jsonl"), str(tmp_path / "other.jsonl")) != once
