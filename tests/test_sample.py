"""The synthetic sample: well-formed, time-ordered, deterministic, with planted structure."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import timedelta

import pytest

import streams.cli
from schemas import UserEvent, VideoPublished, decode
from streams.sample import default_sample_path
from streams.sample.generator import (
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_START,
    DEFAULT_USERS,
    DEFAULT_VIDEOS,
    GENERIC_TAGS,
    TOPIC_NAMES,
    SampleTruth,
    generate,
    summarize,
)
from streams.wire.eventlog import BadLine, read_log

SMALL = dict(videos=300, users=60, days=5)
STATS = dict(seed=11, videos=500, users=150, days=7)


def lines(seed: int, **sizes: int) -> list[str]:
    return [m.to_json().decode() for m in generate(seed, **sizes)]


@pytest.fixture(scope="module")
def sample() -> tuple[list[VideoPublished | UserEvent], SampleTruth]:
    truth = SampleTruth()
    msgs = list(
        generate(STATS["seed"], STATS["videos"], STATS["users"], STATS["days"], truth=truth)
    )
    return msgs, truth


def events(msgs: list, kind: str | None = None) -> list[UserEvent]:
    return [m for m in msgs if isinstance(m, UserEvent) and (kind is None or m.type.value == kind)]


def videos(msgs: list) -> dict[str, VideoPublished]:
    return {m.video_id: m for m in msgs if isinstance(m, VideoPublished)}


def msg_time(m: VideoPublished | UserEvent):
    return m.published_at if isinstance(m, VideoPublished) else m.ts


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    a = lines(3, **SMALL)
    assert a == lines(3, **SMALL)
    b = lines(4, **SMALL)
    assert a != b
    assert len(set(a) & set(b)) < len(a) // 10


def test_every_line_decodes_to_its_message(sample) -> None:
    msgs, _ = sample
    kinds = Counter()
    for m in msgs:
        back = decode(m.to_json())
        assert back == m
        kinds[back.kind] += 1
    assert kinds["video"] == STATS["videos"]
    assert kinds["event"] > 1000


def test_log_is_time_ordered_and_timestamps_are_utc(sample) -> None:
    msgs, _ = sample
    times = [msg_time(m) for m in msgs]
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert times == sorted(times)


def test_videos_are_announced_before_any_event_on_them(sample) -> None:
    msgs, _ = sample
    published: dict[str, VideoPublished] = {}
    for m in msgs:
        if isinstance(m, VideoPublished):
            published[m.video_id] = m
        else:
            assert m.video_id in published, m
            assert published[m.video_id].published_at < m.ts


def test_backfill_comes_first_then_videos_keep_arriving(sample) -> None:
    msgs, _ = sample
    vids = videos(msgs)
    before = [v for v in vids.values() if v.published_at < DEFAULT_START]
    assert abs(len(before) / len(vids) - 0.35) < 0.01
    assert min(v.published_at for v in before) >= DEFAULT_START - timedelta(days=61)
    assert {m.video_id for m in msgs[: len(before)]} == {v.video_id for v in before}
    arriving_days = Counter((v.published_at - DEFAULT_START).days for v in vids.values())
    assert all(arriving_days[d] > 0 for d in range(STATS["days"]))


def test_no_user_plays_a_video_twice_and_event_ids_are_unique(sample) -> None:
    msgs, _ = sample
    evs = events(msgs)
    ids = [e.event_id for e in evs]
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"ev-{STATS['seed']}-00000000"
    plays = Counter((e.user_id, e.video_id) for e in events(msgs, "play"))
    assert max(plays.values()) == 1


def test_event_mix_is_plausible(sample) -> None:
    msgs, _ = sample
    evs = events(msgs)
    by_type = Counter(e.type.value for e in evs)
    plays = by_type["play"]
    assert 0.1 < by_type["skip"] / plays < 0.3
    assert 0.05 < by_type["like"] / by_type["complete"] < 0.2
    assert by_type["share"] > 0 and by_type["dislike"] > 0
    assert 2.0 < by_type["impression"] / plays < 4.0
    played = {(e.user_id, e.video_id) for e in evs if e.type.value == "play"}
    shown = {(e.user_id, e.video_id) for e in evs if e.type.value == "impression"}
    assert len(shown - played) > len(played)  # most impressions are not clicked
    # Every play follows an impression of that video to that user, and ends in skip or watch.
    seen_imp: set[tuple[str, str]] = set()
    outcome: set[tuple[str, str]] = set()
    vids = videos(msgs)
    for e in evs:
        key = (e.user_id, e.video_id)
        if e.type.value == "impression":
            seen_imp.add(key)
        elif e.type.value == "play":
            assert key in seen_imp
        elif e.type.value in ("skip", "watch"):
            outcome.add(key)
        elif e.type.value == "complete":
            assert e.watch_s == vids[e.video_id].duration_s
        if e.type.value == "skip":
            assert e.watch_s <= 20.0
    assert outcome == played


def test_new_videos_get_views_including_their_first_ever(sample) -> None:
    msgs, _ = sample
    vids = videos(msgs)
    plays = events(msgs, "play")
    fresh = [p for p in plays if p.ts - vids[p.video_id].published_at < timedelta(days=7)]
    assert len(fresh) / len(plays) > 0.3
    first: dict[str, UserEvent] = {}
    for p in plays:
        first.setdefault(p.video_id, p)
    brand_new = [p for p in first.values() if vids[p.video_id].published_at >= DEFAULT_START]
    assert len(brand_new) > 100
    stats = summarize(msgs)
    assert stats["share_plays_first_ever"] == round(len(first) / len(plays), 4)


def test_popularity_is_heavy_tailed(sample) -> None:
    msgs, _ = sample
    counts = sorted(Counter(p.video_id for p in events(msgs, "play")).values(), reverse=True)
    top = sum(counts[: STATS["videos"] // 10])
    assert top / sum(counts) > 0.33  # a uniform catalogue would give 0.10
    per_user = sorted(Counter(p.user_id for p in events(msgs, "play")).values())
    assert per_user[-1] > 5 * per_user[len(per_user) // 2]  # a few bingers, many light users


def test_plays_concentrate_on_planted_topics(sample) -> None:
    msgs, truth = sample
    plays = events(msgs, "play")
    on_taste = sum(truth.video_topic[p.video_id] in truth.user_topics(p.user_id) for p in plays)
    supply = Counter(truth.video_topic.values())
    chance = sum(
        sum(supply[t] for t in truth.user_topics(p.user_id)) / STATS["videos"] for p in plays
    )
    assert on_taste / len(plays) > 0.55
    assert on_taste > 3 * chance
    # Sessions binge: consecutive plays of one user stay in the topic far more than by chance.
    last: dict[str, UserEvent] = {}
    same = pairs = 0
    for p in plays:
        prev = last.get(p.user_id)
        if prev is not None and p.ts - prev.ts < timedelta(hours=1):
            pairs += 1
            same += truth.video_topic[prev.video_id] == truth.video_topic[p.video_id]
        last[p.user_id] = p
    assert same / pairs > 0.5
    assert any(truth.user_drifts.values())


def test_text_and_categories_are_informative_but_not_an_oracle(sample) -> None:
    msgs, truth = sample
    vids = videos(msgs)
    tag_topics: dict[str, set[str]] = defaultdict(set)
    cat_topics: dict[str, set[str]] = defaultdict(set)
    for v in vids.values():
        assert v.title and v.description and 3 <= len(v.tags) <= 8
        assert v.category not in TOPIC_NAMES
        cat_topics[v.category].add(truth.video_topic[v.video_id])
        for tag in v.tags:
            tag_topics[tag].add(truth.video_topic[v.video_id])
    shared = {t for t, ts in tag_topics.items() if len(ts) >= 2} - {*GENERIC_TAGS, "shorts"}
    assert len(shared) >= 5, shared
    assert max(len(tag_topics[g]) for g in GENERIC_TAGS) >= 5  # "tips", "2026", ...
    assert max(len(ts) for ts in cat_topics.values()) >= 4  # categories are coarse
    shorts = [v for v in vids.values() if "shorts" in v.tags]
    assert shorts and all((v.width, v.height) == (1080, 1920) for v in shorts)
    assert all(v.duration_s <= 60 for v in shorts)


def _base(tag: str) -> str:
    return tag.split("-")[0]


def test_creators_publish_in_their_language_and_format(sample) -> None:
    msgs, truth = sample
    by_creator: dict[str, list[VideoPublished]] = defaultdict(list)
    for v in videos(msgs).values():
        assert v.language and v.creator_id
        by_creator[v.creator_id].append(v)
    assert len({_base(v.language) for v in videos(msgs).values()}) >= 5  # not one language
    own, res_share = [], []
    for creator, vs in by_creator.items():
        own.append(sum(v.language == truth.creator_language[creator] for v in vs) / len(vs))
        wide = Counter((v.width, v.height) for v in vs if "shorts" not in v.tags)
        assert all(w > h for w, h in wide)  # landscape unless a short
        if wide.total() >= 5:
            res_share.append(wide.most_common(1)[0][1] / wide.total())
    big = [s for s, vs in zip(own, by_creator.values(), strict=True) if len(vs) >= 5]
    assert sum(own) / len(own) > 0.85 and min(big) >= 0.5
    assert sum(s > 0.99 for s in own) > len(own) / 2  # most channels speak only one language
    assert sum(res_share) / len(res_share) > 0.7  # a channel films at its usual resolution


def test_users_mostly_watch_videos_in_their_languages(sample) -> None:
    msgs, truth = sample
    vids = videos(msgs)
    supply = Counter(_base(v.language) for v in vids.values())
    plays = events(msgs, "play")
    own = sum(_base(vids[p.video_id].language) in truth.user_languages[p.user_id] for p in plays)
    chance = sum(
        sum(supply[lang] for lang in truth.user_languages[p.user_id]) / len(vids) for p in plays
    )
    assert own / len(plays) > 0.6
    assert own > 1.5 * chance
    mains = Counter(langs[0] for langs in truth.user_languages.values())
    assert mains.most_common(1)[0][0] == "en" and len(mains) >= 5


def test_shorts_lovers_watch_shorter_videos_than_long_form_watchers(sample) -> None:
    msgs, truth = sample
    vids = videos(msgs)
    durations: dict[str, list[float]] = defaultdict(list)
    for p in events(msgs, "play"):
        durations[truth.user_length[p.user_id]].append(vids[p.video_id].duration_s)
    shorts, long_ = durations["shorts"], durations["long"]
    assert len(shorts) > 100 and len(long_) > 100

    def share_short(ds: list[float]) -> float:
        return sum(d <= 60 for d in ds) / len(ds)

    assert share_short(shorts) > 2 * share_short(long_)
    assert sorted(shorts)[len(shorts) // 2] < 0.75 * sorted(long_)[len(long_) // 2]
    centres: dict[str, list[float]] = defaultdict(list)
    for user, (centre, _) in truth.user_duration.items():
        centres[truth.user_length[user]].append(centre)
    assert max(centres["shorts"]) < min(centres["long"])  # the planted tastes do not overlap


def test_cli_writes_gzip_and_plain_logs(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(streams.cli, "COMMAND_MODULES", ["streams.cli.sample"])
    args = ["--seed", "3", "--videos", "300", "--users", "60", "--days", "5"]
    gz = tmp_path / "out" / "s.jsonl.gz"
    assert streams.cli.main(["sample", *args, "--out", str(gz)]) == 0
    assert "wrote" in capsys.readouterr().err
    with gzip.open(gz, "rt", encoding="utf-8") as f:
        assert f.read().splitlines() == lines(3, **SMALL)
    msgs = list(read_log(gz))
    assert not any(isinstance(m, BadLine) for m in msgs)
    first = gz.read_bytes()
    assert streams.cli.main(["sample", *args, "--out", str(gz), "--quiet"]) == 0
    assert gz.read_bytes() == first  # same seed, same bytes (no gzip timestamp)

    plain = tmp_path / "s.jsonl"
    assert streams.cli.main(["sample", *args, "--out", str(plain), "--stats"]) == 0
    stats = json.loads(capsys.readouterr().err.split("\n", 1)[1])
    assert stats["videos"] == 300
    assert plain.read_text(encoding="utf-8").splitlines() == lines(3, **SMALL)

    assert streams.cli.main(["sample", *args, "--quiet"]) == 0  # stdout
    assert capsys.readouterr().out.splitlines() == lines(3, **SMALL)


def test_vidrec_sample_is_registered(tmp_path) -> None:
    out = tmp_path / "tiny.jsonl"
    argv = ["sample", "--seed", "5", "--videos", "40", "--users", "4", "--days", "1"]
    assert streams.cli.main([*argv, "--out", str(out), "--quiet"]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == lines(5, videos=40, users=4, days=1)


def test_cli_rejects_bad_sizes(monkeypatch, capsys) -> None:
    monkeypatch.setattr(streams.cli, "COMMAND_MODULES", ["streams.cli.sample"])
    with pytest.raises(SystemExit):
        streams.cli.main(["sample", "--videos", "0"])
    assert "must be >= 1" in capsys.readouterr().err


def test_generate_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(-1, 10, 10, 1)
    with pytest.raises(ValueError):
        generate(1, 10, 10, 0)
    with pytest.raises(ValueError):
        generate(1, 10, 10, 1, start=DEFAULT_START.replace(tzinfo=None))


def test_shipped_sample_is_packaged_and_decodes() -> None:
    path = default_sample_path()
    assert path.is_file()
    assert path.stat().st_size < 6_000_000
    with gzip.open(path, "rt", encoding="utf-8") as f:
        head = [decode(next(f)) for _ in range(2000)]
    assert isinstance(head[0], VideoPublished)
    assert any(isinstance(m, UserEvent) for m in head)


@pytest.mark.slow
def test_shipped_sample_has_the_reported_shape() -> None:
    path = default_sample_path()
    stats = summarize(m for m in read_log(path) if not isinstance(m, BadLine))
    assert stats["videos"] == DEFAULT_VIDEOS
    assert 50_000 <= stats["events"] <= 90_000
    assert 15_000 <= stats["plays"] <= 30_000
    assert stats["top10pct_video_share"] > 0.4


@pytest.fixture(scope="module")
def default_run() -> tuple[list[VideoPublished | UserEvent], SampleTruth]:
    """The generator with the shipped sample's arguments, and what it planted."""
    truth = SampleTruth()
    sizes = dict(videos=DEFAULT_VIDEOS, users=DEFAULT_USERS, days=DEFAULT_DAYS)
    return list(generate(DEFAULT_SEED, **sizes, truth=truth)), truth


@pytest.mark.slow
def test_shipped_sample_matches_the_generator(default_run) -> None:
    with gzip.open(default_sample_path(), "rt", encoding="utf-8") as f:
        shipped = f.read().splitlines()
    assert shipped == [m.to_json().decode() for m in default_run[0]]


@pytest.mark.slow
def test_shipped_sample_plants_languages_and_lengths(default_run) -> None:
    """At full size: foreign-language plays are skipped more, and shorts lovers mostly watch
    shorts while long-form watchers rarely do."""
    msgs, truth = default_run
    vids = videos(msgs)
    skipped = {(e.user_id, e.video_id) for e in events(msgs, "skip")}
    plays: dict[bool, list[bool]] = defaultdict(list)
    shorts: dict[str, list[bool]] = defaultdict(list)
    for p in events(msgs, "play"):
        v = vids[p.video_id]
        foreign = _base(v.language) not in truth.user_languages[p.user_id]
        plays[foreign].append((p.user_id, p.video_id) in skipped)
        shorts[truth.user_length[p.user_id]].append(v.duration_s <= 60)
    own_share = len(plays[False]) / (len(plays[False]) + len(plays[True]))
    assert own_share > 0.65
    skip_rate = {k: sum(v) / len(v) for k, v in plays.items()}
    assert skip_rate[True] > 1.2 * skip_rate[False]
    share = {k: sum(v) / len(v) for k, v in shorts.items()}
    assert share["shorts"] > 0.5 > 0.15 > share["long"]
    assert share["shorts"] > share["mixed"] > share["long"] * 0.9
