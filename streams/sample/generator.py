"""Synthetic but realistic video-platform sample: a catalogue and a time-ordered user event log.

The generator plants the structure a streaming recommender must discover (sparse, drifting topic
tastes; binge sessions; heavy-tailed appeal and activity; freshness decay; trending; cold-start
first views; channels with their own topics, language and resolution; users who speak one or two
languages and like shorts, long-form or a mix) behind noisy, overlapping text and coarse
platform categories, so that no single signal is an oracle. ``vidrec sample`` writes it;
``default_sample_path()`` is the shipped one.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import random
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from schemas import EventType, MessageBase, UserEvent, VideoPublished
from streams.sample.vocabulary import (
    GENERIC_DESC,
    GENERIC_TAGS,
    GENERIC_TEMPLATES,
    SHORTS_TEMPLATES,
    TOPICS,
)
from streams.wire.eventlog import open_text

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_SEED = 42
DEFAULT_VIDEOS = 3000
DEFAULT_USERS = 800
DEFAULT_DAYS = 28

DAY = 86400.0
BACKFILL_SHARE = 0.35  # of the catalogue, published in the BACKFILL_DAYS before the stream
BACKFILL_DAYS = 60
FRESH_GAP_S = 600.0  # a video can be watched 10 minutes after publication (processing)
TREND_HALF_LIFE_S = DAY
DRIFT_PER_DAY = 0.025
SESSIONS_PER_DAY = 0.18  # mean over users; individual rates are lognormal
MAX_PICKS = 40
PROGRESS_MIN_USER_DAYS = 100_000  # runs at least this big report progress


TOPIC_NAMES = list(TOPICS)

# Hour-of-day weights: user sessions in local time (evening peak) and publishing in UTC.
_SESSION_HOURS = [
    0.9, 0.5, 0.3, 0.2, 0.15, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.1,
    1.4, 1.3, 1.1, 1.1, 1.3, 1.6, 2.0, 2.5, 2.8, 2.8, 2.3, 1.5,
]  # fmt: skip
_PUBLISH_HOURS = [
    0.4, 0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.2,
    1.5, 1.8, 2.0, 2.0, 1.9, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6, 0.5,
]  # fmt: skip
_TIMEZONES = [(-8, 0.15), (-6, 0.1), (-5, 0.25), (0, 0.15), (1, 0.15), (5.5, 0.1), (8, 0.05),
              (10, 0.05)]  # fmt: skip
_RESOLUTIONS = [((1920, 1080), 0.6), ((1280, 720), 0.2), ((3840, 2160), 0.12),
                ((2560, 1440), 0.05), ((854, 480), 0.03)]  # fmt: skip
# A channel's language tag (country variants included), weighted like a global platform's
# supply; users speak the same languages in the same proportions (by base language).
_LANGUAGE_TAGS = [("en-US", 0.26), ("en", 0.10), ("en-GB", 0.06), ("en-IN", 0.04), ("es", 0.08),
                  ("es-MX", 0.05), ("pt-BR", 0.09), ("hi", 0.08), ("ja", 0.05), ("fr", 0.05),
                  ("de", 0.05), ("ru", 0.04), ("ko", 0.03), ("id", 0.02)]  # fmt: skip
LANGUAGES = list(dict.fromkeys(t.split("-")[0] for t, _ in _LANGUAGE_TAGS))  # base languages
_TAG_LANG = np.array([LANGUAGES.index(t.split("-")[0]) for t, _ in _LANGUAGE_TAGS])
_TAG_WEIGHT = np.array([w for _, w in _LANGUAGE_TAGS]) / sum(w for _, w in _LANGUAGE_TAGS)
_TAG_EN = [t for t, _ in _LANGUAGE_TAGS].index("en")
_LANGUAGE_WEIGHT = [
    (k, math.fsum(w for t, w in _LANGUAGE_TAGS if t.split("-")[0] == lang))
    for k, lang in enumerate(LANGUAGES)
]
CREATOR_SECOND_LANGUAGE = 0.25  # share of channels that also publish in a second language
SECOND_LANGUAGE_SHARE = 0.2  # of such a channel's videos
# Length tastes: (name, share of users, preferred duration in seconds, width in log-seconds).
LENGTH_TASTES = [("shorts", 0.25, 40.0, 0.9), ("mixed", 0.5, 480.0, 1.3),
                 ("long", 0.25, 1500.0, 0.9)]  # fmt: skip
_DUR_LO, _DUR_STEP, _DUR_BINS = math.log(10.0), 0.1, 74  # log-duration bins, 10 s to 4 h
_CATEGORIES = sorted({c for t in TOPICS.values() for c in t["cats"]})
_ID_ALPHABET = string.ascii_letters + string.digits + "-_"
_SMALL_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to",
                "vs", "with", "from", "is", "it"}  # fmt: skip

_EV = [
    EventType.IMPRESSION,
    EventType.PLAY,
    EventType.WATCH,
    EventType.COMPLETE,
    EventType.LIKE,
    EventType.SHARE,
    EventType.SKIP,
    EventType.DISLIKE,
]
IMP, PLAY, WATCH, COMPLETE, LIKE, SHARE, SKIP, DISLIKE = range(8)
_GENERIC_SHARE = {"news": 0.1, "sports": 0.15, "comedy": 0.2, "movies": 0.2}
_EMOJI = ["🔥", "😱", "✨", "👀", "😂"]
_NUMBERS = [3, 5, 5, 7, 10, 10, 12, 15, 20, 25]


@dataclass
class SampleTruth:
    """What the generator planted; for tests and diagnostics only (none of it is in the log).

    Filled in by ``generate(..., truth=SampleTruth())`` before the first message is yielded.
    Tastes map topic name to weight (weights below 1% are left out). A user's languages are base
    languages ("en", not "en-GB"); their duration taste is a preferred length in seconds and a
    width in natural-log seconds (choice weights fall off as a Gaussian in log-duration).
    """

    topics: list[str] = field(default_factory=list)
    subtopics: dict[str, list[str]] = field(default_factory=dict)
    video_topic: dict[str, str] = field(default_factory=dict)
    video_subtopic: dict[str, str] = field(default_factory=dict)
    video_appeal: dict[str, float] = field(default_factory=dict)
    user_taste: dict[str, dict[str, float]] = field(default_factory=dict)
    user_final_taste: dict[str, dict[str, float]] = field(default_factory=dict)
    user_drifts: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    user_joined: dict[str, datetime] = field(default_factory=dict)
    creator_language: dict[str, str] = field(default_factory=dict)  # creator id -> language tag
    user_languages: dict[str, list[str]] = field(default_factory=dict)  # base languages, main first
    user_length: dict[str, str] = field(default_factory=dict)  # "shorts", "mixed" or "long"
    user_duration: dict[str, tuple[float, float]] = field(default_factory=dict)  # (s, log width)

    def user_topics(self, user_id: str, min_weight: float = 0.1) -> set[str]:
        """Topics the user was planted to like at any time: initial main topics plus drifts."""
        main = {t for t, w in self.user_taste.get(user_id, {}).items() if w >= min_weight}
        return main | {t for _, t in self.user_drifts.get(user_id, [])}


def _map(f: Callable[[float], float], x: np.ndarray) -> np.ndarray:
    """``f`` (a ``math`` function) over an array, element by element.

    numpy's own exp, log, exp2 and power take SIMD paths chosen by the CPU (AVX-512 ones on
    some machines), which differ from the C library in the last bit; a sample seeded the same
    must come out the same on every machine, so the generator calls the C library instead.
    """
    return np.fromiter(map(f, np.asarray(x, dtype=float).ravel().tolist()), float).reshape(
        np.shape(x)
    )


def _pow07(x: float) -> float:
    return x**0.7


def _weighted(rnd: random.Random, pairs: list[tuple[Any, float]]) -> Any:
    return rnd.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _token(rnd: random.Random, n: int) -> str:
    return "".join(rnd.choices(_ID_ALPHABET, k=n))


def _title_case(text: str) -> str:
    """Headline case that leaves acronyms, brands and numbers alone (GPU, iPhone, 5K)."""
    words = text.split(" ")
    out = []
    for i, w in enumerate(words):
        if not w or any(c.isupper() for c in w) or not w[0].isalpha():
            out.append(w)
        elif i > 0 and w in _SMALL_WORDS:
            out.append(w)
        else:
            out.append("-".join(p[:1].upper() + p[1:] for p in w.split("-")))
    return " ".join(out)


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Writer:
    """Fills title, description and tag templates from a topic's and subtopic's vocabulary."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self._fields: dict[str, list[str]] = {}
        self._values: dict[str, Any] = {}

    def _names(self, template: str) -> list[str]:
        names = self._fields.get(template)
        if names is None:
            names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
            self._fields[template] = names
        return names

    def begin(self) -> None:
        """Start a new video: slot values are shared by its title and description."""
        self._values: dict[str, Any] = {}

    def _pool(self, topic: str, sub: str, base: str) -> list[str]:
        subs = TOPICS[topic]["subs"]
        vocab = subs[sub]
        key = base + "s" if base + "s" in vocab else base
        if key not in vocab or self.rnd.random() < 0.1:
            # Sometimes a sibling subtopic's words: subtopics blur into each other.
            other = subs[self.rnd.choice(list(subs))]
            if key in other:
                vocab = other
        return vocab.get(key) or vocab["things"]

    def fill(self, template: str, topic: str, sub: str) -> str:
        rnd = self.rnd
        spec = TOPICS[topic]
        values = self._values
        for name in self._names(template):
            if name in values:
                continue
            base = name[:-1] if name[-1] == "2" else name
            if name == "n":
                values[name] = rnd.choice(_NUMBERS)
            elif name == "minutes":
                values[name] = rnd.choice([5, 10, 15, 20, 30])
            elif name == "months":
                values[name] = rnd.choice([3, 6, 6, 12])
            elif name == "days":
                values[name] = rnd.choice([7, 14, 30, 30])
            elif name == "year":
                values[name] = 2026 if rnd.random() < 0.9 else 2025
            elif name in ("adj", "word"):
                values[name] = rnd.choice(spec[name + "s"].split("|"))
            else:
                pool = self._pool(topic, sub, base)
                value = rnd.choice(pool)
                if name != base:
                    for _ in range(10):
                        if value != values.get(base):
                            break
                        value = rnd.choice(pool)
                values[name] = value
        return template.format_map(values)

    def title(self, topic: str, sub: str, short: bool) -> str:
        rnd = self.rnd
        self.begin()
        if short and rnd.random() < 0.6:
            text = self.fill(rnd.choice(SHORTS_TEMPLATES), topic, sub)
            text = _title_case(text) if rnd.random() < 0.3 else _sentence_case(text)
        else:
            generic = _GENERIC_SHARE.get(topic, 0.4)
            pool = GENERIC_TEMPLATES if rnd.random() < generic else TOPICS[topic]["templates"]
            text = _title_case(self.fill(rnd.choice(pool), topic, sub))
            if rnd.random() < 0.03:
                text = text.upper()
        if rnd.random() < 0.05:
            text += " " + rnd.choice(_EMOJI)
        return text

    def description(self, topic: str, sub: str) -> str:
        rnd = self.rnd
        own = TOPICS[topic]["desc"]
        picks = [rnd.choice(own)]
        if rnd.random() < 0.4:
            picks.append(rnd.choice(own))
        if rnd.random() < 0.5:
            picks.append(rnd.choice([*GENERIC_DESC, "Subscribe for more {word} videos."]))
        seen: list[str] = []
        for p in picks[:3]:
            s = _sentence_case(self.fill(p, topic, sub))
            if s not in seen:
                seen.append(s)
        return " ".join(seen)

    def tags(self, topic: str, sub: str, short: bool) -> list[str]:
        rnd = self.rnd
        pools = [
            (TOPICS[topic]["subs"][sub]["tags"], 0.5),
            (TOPICS[topic]["tags"].split("|"), 0.3),
            (GENERIC_TAGS, 0.2),
        ]
        k = rnd.randint(3, 8)
        tags: list[str] = ["shorts"] if short else []
        for _ in range(40):
            if len(tags) >= k:
                break
            tag = rnd.choice(_weighted(rnd, pools))
            if tag not in tags:
                tags.append(tag)
        return tags


@dataclass
class _Catalogue:
    ids: list[str]
    topic: np.ndarray  # topic index per video
    sub: np.ndarray  # global subtopic index per video
    creator: np.ndarray
    pub: np.ndarray  # epoch seconds (whole)
    appeal: np.ndarray
    half_life: np.ndarray  # seconds
    floor: np.ndarray
    duration: np.ndarray
    short: np.ndarray
    creator_ids: list[str]
    creator_lang: list[str]  # language tag per creator
    lang: np.ndarray  # base-language index (into LANGUAGES) per video
    dur_bin: np.ndarray  # log-duration bin per video (see _duration_bin)
    texts: list[tuple[str, str, list[str], str]]  # title, description, tags, category
    meta: list[tuple[int, int, str, str | None]]  # width, height, language, thumbnail


_SUBS: list[tuple[int, str]] = [
    (ti, s) for ti, t in enumerate(TOPIC_NAMES) for s in TOPICS[t]["subs"]
]
_TOPIC_SUBS: list[np.ndarray] = [
    np.array([i for i, (ti, _) in enumerate(_SUBS) if ti == k]) for k in range(len(TOPIC_NAMES))
]
_TOPIC_WEIGHT = np.array([TOPICS[t]["weight"] for t in TOPIC_NAMES], dtype=float)
_TOPIC_WEIGHT /= _TOPIC_WEIGHT.sum()


def _hour_time(rnd: random.Random, day_start: float, hours: list[float], tz_h: float) -> float:
    """A time on the (local) day starting at ``day_start`` with the given hour-of-day rhythm."""
    hour = rnd.choices(range(24), weights=hours)[0]
    return day_start + (hour + rnd.random()) * 3600.0 - tz_h * 3600.0


def _duration_bin(seconds: float) -> int:
    """The log-duration bin of a length: users' duration tastes are tables over these bins."""
    x = (math.log(max(seconds, 1.0)) - _DUR_LO) / _DUR_STEP
    return min(_DUR_BINS - 1, max(0, int(x)))


def _make_catalogue(
    n: int, t0: float, days: float, rng: np.random.Generator, rnd: random.Random
) -> _Catalogue:
    n_topics = len(TOPIC_NAMES)
    n_cr = max(4, round(n / 9))
    primary = rng.choice(n_topics, size=n_cr, p=_TOPIC_WEIGHT)
    if n_cr >= n_topics:  # every topic has at least one channel
        primary[:n_topics] = rng.permutation(n_topics)
    secondary = np.where(
        rng.random(n_cr) < 0.3, rng.choice(n_topics, size=n_cr, p=_TOPIC_WEIGHT), -1
    )
    secondary[secondary == primary] = -1
    fav_sub = np.array([rng.choice(_TOPIC_SUBS[k]) for k in primary])
    output = 1.0 + rng.pareto(1.2, size=n_cr)  # power-law channel output
    output = np.minimum(output, np.quantile(output, 0.99) if n_cr > 20 else output.max())
    quality = rng.lognormal(0.0, 0.5, size=n_cr)
    shorts_share = np.array([TOPICS[TOPIC_NAMES[k]]["shorts"] for k in primary])
    shorts_channel = rng.random(n_cr) < shorts_share * 0.8
    creator_ids = ["UC" + _token(rnd, 22) for _ in range(n_cr)]
    # A channel speaks one language (a few also publish in a second) and films in one format.
    tag = rng.choice(len(_LANGUAGE_TAGS), size=n_cr, p=_TAG_WEIGHT)
    tag2 = np.full(n_cr, -1)
    for c in np.flatnonzero(rng.random(n_cr) < CREATOR_SECOND_LANGUAGE):
        own = int(_TAG_LANG[tag[c]])
        if own != 0 and rnd.random() < 0.7:  # most non-English channels' second one is English
            tag2[c] = _TAG_EN
            continue
        for _ in range(20):
            t2 = int(rng.choice(len(_LANGUAGE_TAGS), p=_TAG_WEIGHT))
            if _TAG_LANG[t2] != own:
                tag2[c] = t2
                break
    creator_res = [_weighted(rnd, _RESOLUTIONS) for _ in range(n_cr)]

    # Topic supply follows topic popularity; within a topic, channels' output is power-law.
    member_w = np.zeros((n_topics, n_cr))
    member_w[primary, np.arange(n_cr)] = output
    has2 = secondary >= 0
    member_w[secondary[has2], np.flatnonzero(has2)] += 0.2 * output[has2]
    supply = _TOPIC_WEIGHT * (member_w.sum(axis=1) > 0)
    topic = rng.choice(n_topics, size=n, p=supply / supply.sum())
    creator = np.empty(n, dtype=int)
    for k in range(n_topics):
        at = np.flatnonzero(topic == k)
        if len(at):
            creator[at] = rng.choice(n_cr, size=len(at), p=member_w[k] / member_w[k].sum())
    sub = np.empty(n, dtype=int)
    fav = (topic == primary[creator]) & (rng.random(n) < 0.6)
    for i in range(n):
        sub[i] = fav_sub[creator[i]] if fav[i] else rng.choice(_TOPIC_SUBS[topic[i]])

    n_back = round(BACKFILL_SHARE * n)
    backfill = np.zeros(n, dtype=bool)
    backfill[rng.permutation(n)[:n_back]] = True
    pub = np.empty(n)
    for i in range(n):
        for _ in range(10):
            if backfill[i]:
                day_start = t0 - (1 + int(rnd.random() * BACKFILL_DAYS)) * DAY
            else:
                day_start = t0 + int(rnd.random() * days) * DAY
            t = _hour_time(rnd, day_start, _PUBLISH_HOURS, 0.0)
            if (t < t0) == bool(backfill[i]) and t < t0 + days * DAY:
                break
        else:  # a very short stream: clamp into the right window
            t = t0 - 60.0 if backfill[i] else min(max(t, t0 + 1.0), t0 + days * DAY - 1.0)
        pub[i] = float(math.floor(t))

    is_short = np.where(shorts_channel[creator], rng.random(n) < 0.8, rng.random(n) < 0.08)
    appeal = rng.lognormal(0.0, 1.3, size=n) * quality[creator]
    base_hl = np.array([TOPICS[TOPIC_NAMES[k]]["half_life"] for k in topic]) * DAY
    half_life = base_hl * rng.lognormal(0.0, 0.35, size=n)
    evergreen_p = np.array([TOPICS[TOPIC_NAMES[k]]["evergreen"] for k in topic])
    evergreen = rng.random(n) < evergreen_p
    floor = np.where(evergreen, rng.uniform(0.2, 0.4, n), rng.uniform(0.02, 0.08, n))
    minutes = np.array([TOPICS[TOPIC_NAMES[k]]["minutes"] for k in topic], dtype=float)
    long_form = rng.random(n) < 0.06
    dur = _map(math.exp, rng.normal(_map(math.log, minutes * 60.0), 0.55))
    dur *= np.where(long_form, 3.5, 1.0)
    dur = np.clip(np.round(dur), 60, 4 * 3600)
    dur = np.where(is_short, rng.integers(12, 61, size=n), dur).astype(float)
    dur_bin = np.array([_duration_bin(d) for d in dur.tolist()], dtype=int)
    second = (tag2[creator] >= 0) & (rng.random(n) < SECOND_LANGUAGE_SHARE)
    video_tag = np.where(second, tag2[creator], tag[creator])

    writer = _Writer(rnd)
    ids: set[str] = set()
    id_list: list[str] = []
    texts = []
    meta = []
    for i in range(n):
        vid = _token(rnd, 11)
        while vid in ids:
            vid = _token(rnd, 11)
        ids.add(vid)
        id_list.append(vid)
        tname = TOPIC_NAMES[topic[i]]
        sname = _SUBS[sub[i]][1]
        cats = list(TOPICS[tname]["cats"].items())
        category = (
            rnd.choice(_CATEGORIES) if rnd.random() < 0.05 else _weighted(rnd, cats)
        )  # fmt: skip
        short = bool(is_short[i])
        texts.append(
            (
                writer.title(tname, sname, short),
                writer.description(tname, sname),
                writer.tags(tname, sname, short),
                category,
            )
        )
        if short:
            w, h = 1080, 1920
        else:  # the channel's usual resolution, now and then another
            w, h = creator_res[creator[i]] if rnd.random() < 0.85 else _weighted(rnd, _RESOLUTIONS)
        thumb = (
            f"https://img.vidrec.example/vi/{vid}/hqdefault.jpg" if rnd.random() < 0.85 else None
        )
        meta.append((w, h, _LANGUAGE_TAGS[video_tag[i]][0], thumb))
    return _Catalogue(
        ids=id_list,
        topic=topic,
        sub=sub,
        creator=creator,
        pub=pub,
        appeal=appeal,
        half_life=half_life,
        floor=floor,
        duration=dur,
        short=is_short,
        creator_ids=creator_ids,
        creator_lang=[_LANGUAGE_TAGS[t][0] for t in tag],
        lang=_TAG_LANG[video_tag],
        dur_bin=dur_bin,
        texts=texts,
        meta=meta,
    )


@dataclass
class _User:
    uid: str
    join: float
    leave: float
    tz: float
    rate: float  # sessions per day
    cont: float  # probability that a session goes on after each video
    binge: float  # probability that the next video stays in the same topic
    trend: float  # probability of a pick from global trending
    taste: np.ndarray  # over topics
    subpref: np.ndarray  # over global subtopics, mean 1 within each topic
    langs: list[int]  # base languages spoken, main first
    lang_w: np.ndarray  # choice weight per base language: 1 for the user's, small otherwise
    length: str  # duration taste: "shorts", "mixed" or "long"
    dur_pref: tuple[float, float]  # preferred log-duration and its width
    dur_fit: np.ndarray  # per log-duration bin, in (0, 1]: how well a length suits the user
    dur_w: np.ndarray  # choice weight per log-duration bin
    watched_list: list[int] = field(default_factory=list)
    affinity: dict[int, float] = field(default_factory=dict)  # creator -> boost
    last_end: float = 0.0
    last_day: int = 0
    drifts: list[tuple[float, int]] = field(default_factory=list)


def _user_languages(rnd: random.Random) -> list[int]:
    """A main language as common as its supply, and for some users a second (mostly English)."""
    main = _weighted(rnd, _LANGUAGE_WEIGHT)
    if rnd.random() >= (0.15 if main == 0 else 0.55):
        return [main]
    if main != 0 and rnd.random() < 0.8:
        return [main, 0]
    for _ in range(20):
        second = _weighted(rnd, _LANGUAGE_WEIGHT)
        if second != main:
            return [main, second]
    return [main]


def _make_users(
    m: int, t0: float, days: float, rng: np.random.Generator, rnd: random.Random
) -> list[_User]:
    n_topics = len(TOPIC_NAMES)
    t_end = t0 + days * DAY
    users = []
    ids: set[str] = set()
    sigma = 1.0
    rates = SESSIONS_PER_DAY * rng.lognormal(-(sigma**2) / 2, sigma, size=m)
    for i in range(m):
        uid = "u-" + _token(rnd, 10)
        while uid in ids:
            uid = "u-" + _token(rnd, 10)
        ids.add(uid)
        join = t0 if rnd.random() < 0.75 else t0 + rnd.random() * 0.9 * days * DAY
        leave = t_end if rnd.random() < 0.88 else join + rnd.random() * (t_end - join)
        k = _weighted(rnd, [(1, 0.35), (2, 0.45), (3, 0.2)])
        main = rng.choice(n_topics, size=k, replace=False, p=_TOPIC_WEIGHT)
        taste = np.zeros(n_topics)
        taste[main] = rng.dirichlet(np.full(k, 1.5))
        eps = rnd.uniform(0.04, 0.15)
        taste = (1 - eps) * taste + eps * rng.dirichlet(np.full(n_topics, 0.3))
        subpref = np.empty(len(_SUBS))
        for subs in _TOPIC_SUBS:
            subpref[subs] = rng.dirichlet(np.full(len(subs), 0.6)) * len(subs)
        langs = _user_languages(rnd)
        lang_w = np.full(len(LANGUAGES), rnd.uniform(0.02, 0.08))
        lang_w[langs] = 1.0
        length, _, centre, width = _weighted(rnd, [(t, t[1]) for t in LENGTH_TASTES])
        mu = math.log(centre) + rnd.gauss(0.0, 0.3)
        sd = width * math.exp(rnd.gauss(0.0, 0.15))
        fit = np.array(
            [math.exp(-0.5 * ((_DUR_LO + (b + 0.5) * _DUR_STEP - mu) / sd) ** 2)
             for b in range(_DUR_BINS)]
        )  # fmt: skip
        users.append(
            _User(
                uid=uid,
                join=join,
                leave=max(leave, join + 3600.0),
                tz=_weighted(rnd, _TIMEZONES),
                rate=float(rates[i]),
                cont=0.93 * rng.beta(7, 2),
                binge=rng.beta(7, 3),
                trend=rng.beta(1.5, 10),
                taste=taste,
                subpref=subpref,
                langs=langs,
                lang_w=lang_w,
                length=length,
                dur_pref=(mu, sd),
                dur_fit=fit,
                dur_w=0.05 + 0.95 * fit,
                last_day=int(join // DAY),
            )
        )
    return users


_LN2 = math.log(2.0)


def _group(items: np.ndarray, keys: np.ndarray, n: int) -> list[np.ndarray]:
    """``items`` split by key ``0..n-1``, each group keeping the items' order."""
    by_key = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[by_key], np.arange(n + 1))
    return [items[by_key[bounds[k] : bounds[k + 1]]] for k in range(n)]


class _Simulator:
    """Plays every user session in global time order, so trending reflects what others did."""

    def __init__(
        self,
        cat: _Catalogue,
        t0: float,
        t_end: float,
        rng: np.random.Generator,
        rnd: random.Random,
    ) -> None:
        self.cat = cat
        self.t_end = t_end
        self.rng = rng
        self.rnd = rnd
        n_topics = len(TOPIC_NAMES)
        order = np.lexsort((np.arange(len(cat.pub)), cat.pub))
        self.topic_vids = _group(order, cat.topic[order], n_topics)
        self.topic_pub = [cat.pub[v] for v in self.topic_vids]
        self.creator_vids = _group(order, cat.creator[order], len(cat.creator_ids))
        self.creator_pub = [cat.pub[v] for v in self.creator_vids]
        # Trending = exponentially decayed play counts, stored in units of exp(lam * (t - t_ref)).
        self.lam = _LN2 / TREND_HALF_LIFE_S
        self.t_ref = t0
        back = cat.pub < t0
        self.trend = np.where(back, cat.appeal * self._decay(np.arange(len(cat.pub)), t0), 0.0)
        self._top_key = -1
        self._top = np.zeros(0, dtype=int)
        self.events: list[tuple[float, int, int, int, int, float]] = []
        self.seq = 0
        # mark[v] == stamp <=> the user of the session being played has watched v.
        self.mark = np.zeros(len(cat.pub), dtype=np.int64)
        self.stamp = 0

    # -- building blocks ------------------------------------------------------------------
    def _decay(self, idx: np.ndarray, t: float) -> np.ndarray:
        cat = self.cat
        age = np.maximum(t - cat.pub[idx], 0.0)
        return cat.floor[idx] + (1.0 - cat.floor[idx]) * _map(math.exp2, -age / cat.half_life[idx])

    def _trend_now(self, idx: np.ndarray, t: float) -> np.ndarray:
        return self.trend[idx] * math.exp(-self.lam * (t - self.t_ref))

    def _bump(self, v: int, t: float) -> None:
        f = math.exp(self.lam * (t - self.t_ref))
        if f > 1e150:
            self.trend *= 1.0 / f
            self.t_ref = t
            f = 1.0
        self.trend[v] += f

    def _emit(self, ts: float, u: int, v: int, code: int, watch_s: float = 0.0) -> None:
        self.events.append((ts, self.seq, u, v, code, watch_s))
        self.seq += 1

    def _draw(self, w: np.ndarray) -> int:
        c = np.cumsum(w)
        if len(c) == 0 or c[-1] <= 0:
            return -1
        return min(int(np.searchsorted(c, self.rnd.random() * c[-1], side="right")), len(c) - 1)

    def _available(self, vids: np.ndarray, pubs: np.ndarray, t: float) -> np.ndarray:
        return vids[: int(np.searchsorted(pubs, t - FRESH_GAP_S, side="right"))]

    def _weights(self, u: _User, idx: np.ndarray, t: float, same_sub: int = -1) -> np.ndarray:
        """Choice weights within a pool: appeal, freshness, taste, language, length, social proof.

        Each is a factor: a video in a language the user does not speak, or of a length far from
        the user's, keeps a small weight (people do watch those, rarely), never zero.
        """
        cat = self.cat
        w = cat.appeal[idx] * self._decay(idx, t) * u.subpref[cat.sub[idx]]
        w *= u.lang_w[cat.lang[idx]] * u.dur_w[cat.dur_bin[idx]]
        trend = self._trend_now(idx, t)
        hot = np.flatnonzero(trend)
        w[hot] *= _map(_pow07, 1.0 + trend[hot] / 3.0)
        if same_sub >= 0:
            w *= np.where(cat.sub[idx] == same_sub, 4.0, 1.0)
        if u.affinity:
            keys = np.fromiter(u.affinity.keys(), dtype=int, count=len(u.affinity))
            vals = np.fromiter(u.affinity.values(), dtype=float, count=len(u.affinity))
            order = np.argsort(keys)
            keys, vals = keys[order], vals[order]
            cr = cat.creator[idx]
            pos = np.minimum(np.searchsorted(keys, cr), len(keys) - 1)
            w *= np.where(keys[pos] == cr, 1.0 + vals[pos], 1.0)
        w[self.mark[idx] == self.stamp] = 0.0  # never a video this user has watched
        return w

    def _trending(self, u: _User, t: float) -> tuple[np.ndarray, np.ndarray]:
        key = int(t // 3600)
        if key != self._top_key:
            k = min(60, len(self.trend))
            self._top = np.argsort(-self.trend, kind="stable")[:k]
            self._top_key = key
        idx = self._top[self.cat.pub[self._top] <= t - FRESH_GAP_S]
        taste = u.taste / u.taste.max()
        w = self._trend_now(idx, t) * (0.3 + taste[self.cat.topic[idx]])
        w *= u.lang_w[self.cat.lang[idx]] * u.dur_w[self.cat.dur_bin[idx]]
        w[self.mark[idx] == self.stamp] = 0.0
        return idx, w

    # -- one session ----------------------------------------------------------------------
    def _drift(self, u: _User, t: float) -> None:
        day = int(t // DAY)
        n = day - u.last_day
        if n <= 0:
            return
        u.last_day = day
        if self.rnd.random() < 1.0 - (1.0 - DRIFT_PER_DAY) ** n:
            cand = np.flatnonzero(u.taste < 0.1)
            if len(cand) == 0:
                return
            p = _TOPIC_WEIGHT[cand] / _TOPIC_WEIGHT[cand].sum()
            k = int(self.rng.choice(cand, p=p))
            s = self.rnd.uniform(0.3, 0.6)
            u.taste = (1.0 - s) * u.taste
            u.taste[k] += s
            u.drifts.append((t, k))

    def _pick(self, u: _User, t: float, prev: int, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        rnd = self.rnd
        cat = self.cat
        empty = np.zeros(0, dtype=int)
        k, same_sub = -1, -1
        if rnd.random() < u.trend:
            idx, w = self._trending(u, t)
            j = self._draw(w)
            if j >= 0:
                return int(idx[j]), idx, w
        elif i > 0 and rnd.random() < u.binge:
            if rnd.random() < 0.2:  # same creator, e.g. the next episode
                c = int(cat.creator[prev])
                idx = self._available(self.creator_vids[c], self.creator_pub[c], t)
                w = self._weights(u, idx, t)
                j = self._draw(w)
                if j >= 0:
                    return int(idx[j]), idx, w
            k = int(cat.topic[prev])
            if rnd.random() < 0.55:
                same_sub = int(cat.sub[prev])
        for _ in range(4):
            if k < 0:
                k = self._draw(u.taste)
            idx = self._available(self.topic_vids[k], self.topic_pub[k], t)
            w = self._weights(u, idx, t, same_sub)
            j = self._draw(w)
            if j >= 0:
                return int(idx[j]), idx, w
            k, same_sub = -1, -1
        return -1, empty, np.zeros(0)

    def _slate(
        self, u: _User, v: int, t: float, pool: np.ndarray, w: np.ndarray, size: int
    ) -> list[int]:
        """The videos shown beside the chosen one: plausible alternatives, sometimes trending.

        The platform knows the user's language but not their taste in length, so alternatives
        are drawn without it: some are lengths the user will pass over.
        """
        rnd = self.rnd
        ok = (w > 0) & (pool != v)
        cand = pool[ok]
        wc = w[ok] / u.dur_w[self.cat.dur_bin[cand]]
        m = min(size - 1, len(cand))
        others: list[int] = []
        if m > 0:  # weighted sampling without replacement (Efraimidis-Spirakis keys)
            keys = _map(math.log, self.rng.random(len(cand))) / wc
            top = np.argpartition(-keys, m - 1)[:m] if m < len(cand) else np.arange(len(cand))
            others = [int(x) for x in cand[top[np.argsort(-keys[top])]]]
        if size >= 4 and rnd.random() < 0.5:
            tidx, tw = self._trending(u, t)
            j = self._draw(tw)
            if j >= 0 and int(tidx[j]) != v and int(tidx[j]) not in others:
                if len(others) >= size - 1 and others:
                    others[-1] = int(tidx[j])
                else:
                    others.append(int(tidx[j]))
        others.insert(rnd.randint(0, len(others)), v)
        return others

    def _watch(
        self, ui: int, u: _User, v: int, t: float, pool: np.ndarray, w: np.ndarray, browse: bool
    ) -> float:
        """Impressions, then the play and its outcome; returns when the user is done with it."""
        rnd = self.rnd
        cat = self.cat
        if rnd.random() < 0.15:  # seen earlier in a feed or an up-next rail, not clicked then
            self._emit(t - rnd.uniform(30.0, 400.0), ui, v, IMP)
        size = rnd.randint(4, 7) if browse else 1 + (rnd.random() < 0.25)
        for x in self._slate(u, v, t, pool, w, size) if size > 1 else [v]:
            self._emit(t, ui, x, IMP)
        tp = t + rnd.uniform(1.5, 12.0)
        self._emit(tp, ui, v, PLAY)
        self._bump(v, tp)
        u.watched_list.append(v)
        self.mark[v] = self.stamp

        k, s, c = int(cat.topic[v]), int(cat.sub[v]), int(cat.creator[v])
        dur = float(cat.duration[v])
        match = math.sqrt(u.taste[k] / u.taste.max()) * min(1.0, float(u.subpref[s])) ** 0.3
        aff = u.affinity.get(c, 0.0)
        fit = float(u.dur_fit[cat.dur_bin[v]])
        foreign = u.lang_w[cat.lang[v]] < 1.0
        p_skip = 0.05 + 0.32 * (1.0 - match) ** 1.2 + (0.06 if cat.appeal[v] < 0.5 else 0.0)
        p_skip += 0.2 if aff < -0.3 else 0.0
        p_skip += (0.1 if foreign else 0.0) + 0.06 * (1.0 - fit)
        if rnd.random() < p_skip:
            ws = round(rnd.uniform(1.5, max(2.0, min(20.0, 0.3 * dur))), 1)
            end = tp + ws
            self._emit(end, ui, v, SKIP, ws)
            if rnd.random() < 0.05:
                end += rnd.uniform(0.5, 3.0)
                self._emit(end, ui, v, DISLIKE, ws)
                aff -= 0.6
            aff -= 0.15
        else:
            base = 0.85 if cat.short[v] else 0.1 + 0.75 * math.exp(-dur / 2400.0)
            quality = 1.0 + 0.1 * min(float(cat.appeal[v]), 3.0)
            p_complete = min(0.97, base * (0.55 + 0.45 * match) * quality * (0.75 + 0.4 * fit))
            if rnd.random() < p_complete:
                half = round(dur * rnd.uniform(0.35, 0.65), 1)
                self._emit(tp + half, ui, v, WATCH, half)
                end = tp + dur
                self._emit(end, ui, v, COMPLETE, dur)
                p_like, p_share, p_dislike = 0.04 + 0.07 * match, 0.025, 0.002
                aff += 0.25
                watched = dur
            else:
                watched = round(dur * (0.03 + 0.95 * self.rng.beta(1.3, 2.5)), 1)
                end = tp + watched
                self._emit(end, ui, v, WATCH, watched)
                p_like, p_share, p_dislike = 0.015, 0.005, 0.012 + 0.03 * (1.0 - match)
            if rnd.random() < p_like:
                end += rnd.uniform(0.5, 4.0)
                self._emit(end, ui, v, LIKE, watched)
                aff += 1.0
            if rnd.random() < p_share:
                end += rnd.uniform(1.0, 8.0)
                self._emit(end, ui, v, SHARE, watched)
                aff += 0.5
            if rnd.random() < p_dislike:
                end += rnd.uniform(0.5, 3.0)
                self._emit(end, ui, v, DISLIKE, watched)
                aff -= 0.6
        u.affinity[c] = min(4.0, max(-0.8, aff))
        return end

    def session(self, ui: int, u: _User, t: float) -> None:
        rnd = self.rnd
        if t < u.last_end + 300.0:
            t = u.last_end + 300.0 + rnd.random() * 1800.0
        stop = min(u.leave, self.t_end)
        if t >= stop:
            return
        self._drift(u, t)
        self.stamp += 1
        self.mark[u.watched_list] = self.stamp
        prev = -1
        for i in range(MAX_PICKS):
            if i > 0 and rnd.random() > u.cont:
                break
            v, pool, w = self._pick(u, t, prev, i)
            if v < 0:
                break
            t = self._watch(ui, u, v, t, pool, w, browse=i == 0 or rnd.random() < 0.15)
            prev = v
            u.last_end = t
            t += rnd.uniform(2.0, 25.0)
            if t >= stop:
                break


def _session_starts(
    users: list[_User], rnd: random.Random, rng: np.random.Generator
) -> list[tuple[float, int]]:
    """Session start times per user: Poisson count over the active span, evening-heavy hours."""
    starts = []
    for ui, u in enumerate(users):
        span = u.leave - u.join
        n = max(1, int(rng.poisson(u.rate * span / DAY)))
        for _ in range(n):
            t = u.join + rnd.random() * span
            for _ in range(5):
                local_day = math.floor((t + u.tz * 3600.0) / DAY) * DAY
                cand = _hour_time(rnd, local_day, _SESSION_HOURS, u.tz)
                if u.join <= cand < u.leave:
                    t = cand
                    break
            starts.append((t, ui))
    starts.sort()
    return starts


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(round(ts, 3), UTC)


def generate(
    seed: int,
    videos: int,
    users: int,
    days: float,
    start: datetime = DEFAULT_START,
    *,
    truth: SampleTruth | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[VideoPublished | UserEvent]:
    """Generate a catalogue and the users' events as one stream-time-ordered message sequence.

    Parameters
    ----------
    seed
        Everything is a function of the seed (and the sizes): same arguments, same lines.
    videos, users, days
        Catalogue size (35% published in the 60 days before ``start``), user count, and the
        length of the stream in days.
    start
        Stream start (timezone-aware).
    truth
        When given, filled with the planted structure before the first message is yielded.
    progress
        Called with a short line now and then on large runs (the CLI prints it to stderr).

    Yields
    ------
    VideoPublished at its ``published_at`` (before any event on it), and ``UserEvent``\\ s, in
    non-decreasing time order; event ids are ``ev-<seed>-<n>`` in output order.
    """
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if videos < 1 or users < 0 or days <= 0:
        raise ValueError("need videos >= 1, users >= 0 and days > 0")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    return _generate(seed, videos, users, days, start, truth, progress)


def _generate(
    seed: int,
    videos: int,
    users: int,
    days: float,
    start: datetime,
    truth: SampleTruth | None,
    progress: Callable[[str], None] | None,
) -> Iterator[VideoPublished | UserEvent]:
    t0 = start.timestamp()
    t_end = t0 + days * DAY
    # Independent streams per stage (catalogue, users, sessions, simulation): numpy for arrays,
    # Python's random for the many scalar draws, where it is much faster.
    seeds = np.random.SeedSequence(seed).spawn(8)
    rngs = [np.random.default_rng(s) for s in seeds[:4]]
    rnds = [random.Random(int(s.generate_state(1)[0])) for s in seeds[4:]]
    say = progress if progress is not None and users * days >= PROGRESS_MIN_USER_DAYS else None

    if say:
        say(f"catalogue: {videos} videos")
    cat = _make_catalogue(videos, t0, days, rngs[0], rnds[0])
    people = _make_users(users, t0, days, rngs[1], rnds[1])
    starts = _session_starts(people, rnds[2], rngs[2])
    if say:
        say(f"users: {users}, sessions: {len(starts)}")
    initial_taste = [u.taste.copy() for u in people]
    sim = _Simulator(cat, t0, t_end, rngs[3], rnds[3])
    step = max(1, len(starts) // 10)
    for n, (t, ui) in enumerate(starts, start=1):
        sim.session(ui, people[ui], t)
        if say and n % step == 0:
            say(f"simulated {n}/{len(starts)} sessions, {len(sim.events)} events")
    sim.events.sort()

    if truth is not None:
        _fill_truth(truth, cat, people, initial_taste)

    yield from _messages(seed, cat, people, sim.events, say)


def _taste_dict(taste: np.ndarray) -> dict[str, float]:
    return {TOPIC_NAMES[k]: round(float(w), 4) for k, w in enumerate(taste) if w >= 0.01}


def _fill_truth(
    truth: SampleTruth, cat: _Catalogue, people: list[_User], initial: list[np.ndarray]
) -> None:
    truth.topics = list(TOPIC_NAMES)
    truth.subtopics = {t: list(TOPICS[t]["subs"]) for t in TOPIC_NAMES}
    for i, vid in enumerate(cat.ids):
        truth.video_topic[vid] = TOPIC_NAMES[cat.topic[i]]
        truth.video_subtopic[vid] = _SUBS[cat.sub[i]][1]
        truth.video_appeal[vid] = float(cat.appeal[i])
    for u, taste in zip(people, initial, strict=True):
        truth.user_taste[u.uid] = _taste_dict(taste)
        truth.user_final_taste[u.uid] = _taste_dict(u.taste)
        truth.user_drifts[u.uid] = [(_dt(t), TOPIC_NAMES[k]) for t, k in u.drifts]
        truth.user_joined[u.uid] = _dt(u.join)
        truth.user_languages[u.uid] = [LANGUAGES[k] for k in u.langs]
        truth.user_length[u.uid] = u.length
        truth.user_duration[u.uid] = (round(math.exp(u.dur_pref[0]), 1), round(u.dur_pref[1], 4))
    truth.creator_language = dict(zip(cat.creator_ids, cat.creator_lang, strict=True))


def _messages(
    seed: int,
    cat: _Catalogue,
    people: list[_User],
    events: list[tuple[float, int, int, int, int, float]],
    say: Callable[[str], None] | None,
) -> Iterator[VideoPublished | UserEvent]:
    order = np.lexsort((np.arange(len(cat.pub)), cat.pub))
    pubs = cat.pub[order]
    vi = 0

    def video(i: int) -> VideoPublished:
        title, desc, tags, category = cat.texts[i]
        width, height, lang, thumb = cat.meta[i]
        return VideoPublished(
            video_id=cat.ids[i],
            title=title,
            description=desc,
            tags=tags,
            category=category,
            duration_s=float(cat.duration[i]),
            width=width,
            height=height,
            language=lang,
            published_at=_dt(float(cat.pub[i])),
            thumbnail_url=thumb,
            creator_id=cat.creator_ids[cat.creator[i]],
        )

    step = max(1, len(events) // 10)
    for n, (ts, _, ui, v, code, watch_s) in enumerate(events):
        while vi < len(order) and pubs[vi] <= ts:
            yield video(int(order[vi]))
            vi += 1
        yield UserEvent(
            event_id=f"ev-{seed}-{n:08d}",
            user_id=people[ui].uid,
            video_id=cat.ids[v],
            type=_EV[code],
            watch_s=watch_s,
            ts=_dt(ts),
        )
        if say and (n + 1) % step == 0:
            say(f"wrote {n + 1}/{len(events)} events")
    while vi < len(order):
        yield video(int(order[vi]))
        vi += 1


def summarize(messages: Iterable[Any], fresh_days: float = 7.0) -> dict[str, Any]:
    """Statistics of a log, as reported for the shipped sample (what a replay will meet).

    Videos published before the first user event count as backfill; "fresh" plays are on videos
    younger than ``fresh_days``; a first play is the first ever play of its video.
    """
    pub: dict[str, datetime] = {}
    first_event: datetime | None = None
    backfill = 0
    by_type: Counter[str] = Counter()
    plays_per_video: Counter[str] = Counter()
    plays_per_user: Counter[str] = Counter()
    users: set[str] = set()
    fresh = first = 0
    fresh_s = fresh_days * DAY
    for m in messages:
        if isinstance(m, VideoPublished):
            pub[m.video_id] = m.published_at
            if first_event is None:
                backfill += 1
        elif isinstance(m, UserEvent):
            first_event = first_event or m.ts
            users.add(m.user_id)
            by_type[m.type.value] += 1
            if m.type is EventType.PLAY:
                if plays_per_video[m.video_id] == 0:
                    first += 1
                plays_per_video[m.video_id] += 1
                plays_per_user[m.user_id] += 1
                if (m.ts - pub[m.video_id]).total_seconds() < fresh_s:
                    fresh += 1
    plays = by_type["play"]
    counts = sorted(plays_per_video.values(), reverse=True) + [0] * (
        len(pub) - len(plays_per_video)
    )

    def top_share(frac: float) -> float:
        k = max(1, round(frac * len(counts)))
        return round(sum(counts[:k]) / plays, 4) if plays else 0.0

    return {
        "videos": len(pub),
        "videos_backfill": backfill,
        "videos_arriving": len(pub) - backfill,
        "users": len(users),
        "events": sum(by_type.values()),
        "events_by_type": dict(sorted(by_type.items())),
        "plays": plays,
        "videos_played": len(plays_per_video),
        "share_plays_fresh": round(fresh / plays, 4) if plays else 0.0,
        "share_plays_first_ever": round(first / plays, 4) if plays else 0.0,
        "mean_plays_per_user": round(plays / len(plays_per_user), 2) if plays_per_user else 0.0,
        "max_plays_per_user": max(plays_per_user.values(), default=0),
        "top1pct_video_share": top_share(0.01),
        "top10pct_video_share": top_share(0.10),
        "likes_per_complete": round(by_type["like"] / by_type["complete"], 4)
        if by_type["complete"]
        else 0.0,
        "skips_per_play": round(by_type["skip"] / plays, 4) if plays else 0.0,
    }


def write_sample(path: str | Path, messages: Iterable[MessageBase]) -> int:
    """Write messages as JSON lines (``-`` is stdout); returns the line count.

    A ``.gz`` file is written with a zero gzip timestamp and no file name in its header, so the
    same seed gives the same bytes; files are written beside the target and renamed into place,
    so a reader never sees half a sample.
    """
    if str(path) == "-":
        f = open_text("-", "w")
        n = 0
        for msg in messages:
            f.write(msg.to_json().decode() + "\n")
            n += 1
        f.flush()
        return n
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    try:
        with open(tmp, "wb") as raw:
            if path.suffix == ".gz":
                gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9)
                out: io.TextIOBase = io.TextIOWrapper(gz, encoding="utf-8")
            else:
                out = io.TextIOWrapper(raw, encoding="utf-8")
            with out:
                for msg in messages:
                    out.write(msg.to_json().decode() + "\n")
                    n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
