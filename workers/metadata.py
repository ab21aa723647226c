"""What a video's upload tells about it, and what a user's events tell about their taste in it.

A platform knows a video's creator, language, length and format the moment it is uploaded, when
the video has nothing else going for it: no views, no co-counts, no factors. Two small objects
turn that into ranking features (``workers.ranker.META_FEATURES``):

- ``ItemMeta``: per catalogue index, the creator, language, log-length and format as codes and
  floats (engine-local codes, like the catalogue's indices), and each creator's recent videos
  (the "more from creators you watch" candidates);
- ``UserMeta``: per user, exponentially decayed weights of their positive events by creator, by
  language and by format, and decayed moments of the log-lengths they watch; ``learn_one`` adds
  an event, ``features`` scores candidates.

Shares are ratios of decayed sums with the same reference time, so the decay cancels in a share
and a user's weights never need touching between their events: each event adds
``w * 2 ** ((ts - t_ref) / half_life)``, and ``t_ref`` is moved forward only when the factor
grows large.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from schemas import VideoPublished
from workers import kernels

# formats: 0 unknown, then 1 + 3 * orientation (0 landscape or square, 1 portrait) + tier
# (0 below 720 lines on the short side, 1 up to 1080, 2 above)
N_FORMATS = 7
# per-user caps: the creators and languages a user's shares are kept for (least weight out)
MAX_CREATORS = 16
MAX_LANGUAGES = 4
# pseudo-weight in every share's denominator: one event on a creator is not "all of the user's
# taste" (an event weighs 1-3)
PRIOR = 1.0
# floor of the spread of the log-lengths a user watches (a factor of ~1.6 either side): a user
# who watched three 10-minute videos is not thereby averse to 12-minute ones
MIN_LOG_SD = 0.5
_REBASE_HALF_LIVES = 200.0  # the decay factor's exponent beyond which the reference moves
CREATOR_RECENT = 20  # each creator's most recent videos kept as candidates
_NO_FORMATS = np.zeros(N_FORMATS, dtype=np.float64)


def language_code(tag: str) -> str:
    """The primary language subtag, lower case: "en-US" and "en_GB" are both "en"."""
    return tag.strip().replace("_", "-").split("-", 1)[0].lower()


def format_code(width: int, height: int) -> int:
    if width <= 0 or height <= 0:
        return 0
    short = min(width, height)
    tier = 0 if short < 720 else (1 if short <= 1080 else 2)
    return 1 + 3 * int(height > width) + tier


class _Codes:
    """Names to small engine-local codes (0: none), so per-item columns are machine words."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = names or [""]
        self._code = {n: i for i, n in enumerate(self.names)}

    def code(self, name: str) -> int:
        c = self._code.get(name)
        if c is None:
            c = self._code[name] = len(self.names)
            self.names.append(name)
        return c

    def get(self, name: str) -> int:
        return self._code.get(name, 0)


class ItemMeta:
    """The metadata columns of the catalogue, by catalogue index (unknown: code 0, NaN length)."""

    def __init__(self) -> None:
        self.creators = _Codes()
        self.languages = _Codes()
        self.creator = np.zeros(0, dtype=np.int32)
        self.language = np.zeros(0, dtype=np.int32)
        self.log_duration = np.zeros(0, dtype=np.float32)
        self.format = np.zeros(0, dtype=np.int8)
        # creator code -> its most recent videos (catalogue indices), newest last
        self.recent: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.creator)

    def _grow(self, n: int) -> None:
        if n <= len(self.creator):
            return
        cap = max(64, 2 * n)
        for name, fill in (
            ("creator", 0),
            ("language", 0),
            ("log_duration", np.nan),
            ("format", 0),
        ):
            old = getattr(self, name)
            new = np.full(cap, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def set(self, idx: int, video: VideoPublished) -> None:
        """Record what ``video`` says about itself at catalogue index ``idx``."""
        self._grow(idx + 1)
        c = self.creators.code(video.creator_id) if video.creator_id else 0
        if c and self.creator[idx] != c:
            recent = self.recent.setdefault(c, [])
            recent.append(idx)
            del recent[:-CREATOR_RECENT]
        self.creator[idx] = c
        lang = language_code(video.language) if video.language else ""
        self.language[idx] = self.languages.code(lang) if lang else 0
        self.log_duration[idx] = math.log(video.duration_s) if video.duration_s >= 1 else np.nan
        self.format[idx] = format_code(video.width, video.height)

    def of(self, idx: int) -> tuple[int, int, float, int]:
        """``(creator, language, log-length, format)`` of one item (an item never described:
        all unknown)."""
        if idx >= len(self.creator):
            return 0, 0, math.nan, 0
        return (
            int(self.creator[idx]),
            int(self.language[idx]),
            float(self.log_duration[idx]),
            int(self.format[idx]),
        )

    def columns(self, items: np.ndarray) -> tuple[np.ndarray, ...]:
        """The four columns of ``items`` (items beyond the described ones: unknown)."""
        n = len(self.creator)
        inside = items < n
        if n == 0:  # no video described yet
            m = len(items)
            return (np.zeros(m, np.int32), np.zeros(m, np.int32),
                    np.full(m, np.nan, np.float32), np.zeros(m, np.int8))  # fmt: skip
        if inside.all():
            return (self.creator[items], self.language[items], self.log_duration[items],
                    self.format[items])  # fmt: skip
        safe = np.where(inside, items, 0)
        return (
            np.where(inside, self.creator[safe], 0),
            np.where(inside, self.language[safe], 0),
            np.where(inside, self.log_duration[safe], np.nan),
            np.where(inside, self.format[safe], 0),
        )

    def to_state(self) -> dict[str, Any]:
        n = len(self.creator)
        return {
            "creators": list(self.creators.names),
            "languages": list(self.languages.names),
            "creator": self.creator[:n].copy(),
            "language": self.language[:n].copy(),
            "log_duration": self.log_duration[:n].copy(),
            "format": self.format[:n].copy(),
            "recent": {int(k): list(v) for k, v in self.recent.items()},
        }

    @classmethod
    def from_state(cls, s: dict[str, Any] | None) -> ItemMeta:
        obj = cls()
        if not s:  # a snapshot from before issue 16
            return obj
        obj.creators = _Codes(list(s["creators"]))
        obj.languages = _Codes(list(s["languages"]))
        obj.creator = np.asarray(s["creator"], dtype=np.int32).copy()
        obj.language = np.asarray(s["language"], dtype=np.int32).copy()
        obj.log_duration = np.asarray(s["log_duration"], dtype=np.float32).copy()
        obj.format = np.asarray(s["format"], dtype=np.int8).copy()
        obj.recent = {int(k): list(v) for k, v in s["recent"].items()}
        return obj


class UserMeta:
    """A user's decayed taste in creators, languages, formats and lengths.

    About 200 bytes plus 12 a creator or language held; capped (``MAX_CREATORS``,
    ``MAX_LANGUAGES``): a full table drops its lightest entry for a new one.
    """

    __slots__ = ("t_ref", "scale", "total", "creators", "languages", "formats", "dur")

    def __init__(self) -> None:
        self.t_ref: float | None = None
        self.scale = 1.0  # the decay factor of the latest event: PRIOR in the sums' units
        self.total = 0.0  # every positive event's weight: the creator shares' denominator
        self.creators: dict[int, float] = {}
        self.languages: dict[int, float] = {}
        self.formats = np.zeros(N_FORMATS, dtype=np.float64)
        self.dur = np.zeros(3, dtype=np.float64)  # sum w, sum w x, sum w x^2 of log-lengths

    def learn_one(
        self, meta: tuple[int, int, float, int], w: float, ts: float, half_life_s: float
    ) -> None:
        """Add one positive event of weight ``w`` at ``ts`` on an item described by ``meta``."""
        if self.t_ref is None:
            self.t_ref = ts
        e = (ts - self.t_ref) / half_life_s
        if e > _REBASE_HALF_LIVES:  # the reference is far behind: move it to now
            self._scale(2.0 ** -min(e, 1100.0))  # what is that old may vanish to 0
            self.t_ref, e = ts, 0.0
        f = 2.0 ** max(e, -1100.0)  # an event far older than the reference weighs ~0
        self.scale = max(self.scale, f)
        x = w * f
        creator, language, log_dur, fmt = meta
        self.total += x
        if creator:
            _add_capped(self.creators, creator, x, MAX_CREATORS)
        if language:
            _add_capped(self.languages, language, x, MAX_LANGUAGES)
        if fmt:
            self.formats[fmt] += x
        if not math.isnan(log_dur):
            self.dur += (x, x * log_dur, x * log_dur * log_dur)

    def _scale(self, f: float) -> None:
        self.scale *= f
        self.total *= f
        for d in (self.creators, self.languages):
            for k in d:
                d[k] *= f
        self.formats *= f
        self.dur *= f

    def features(
        self, creator: np.ndarray, language: np.ndarray, log_dur: np.ndarray, fmt: np.ndarray
    ) -> np.ndarray:
        """The (n, 4) ``META_FEATURES`` of items with these columns: the user's share of events
        on each item's creator, language and format, and how well its length fits theirs (a
        Gaussian in log-length, 1 at their mean). 0 where the item or the user says nothing."""
        if self.total <= 0:
            return np.zeros((len(creator), 4), dtype=np.float32)
        prior = PRIOR * self.scale
        lang_total = sum(self.languages.values())
        fmt_total = float(self.formats.sum())
        share = _NO_FORMATS
        if fmt_total > 0:
            share = self.formats / (fmt_total + prior)
            share[0] = 0.0
        s0, s1, s2 = self.dur
        mean = var = 0.0
        if s0 > 0:
            mean = s1 / s0
            var = max(s2 / s0 - mean * mean, 0.0) + MIN_LOG_SD**2
        c, lg = self.creators, self.languages
        return kernels.meta_features(
            creator,
            language,
            log_dur,
            fmt,
            np.fromiter(c.keys(), np.int64, len(c)),
            np.fromiter(c.values(), np.float64, len(c)),
            self.total + prior,
            np.fromiter(lg.keys(), np.int64, len(lg)),
            np.fromiter(lg.values(), np.float64, len(lg)),
            lang_total + prior if lang_total > 0 else 0.0,
            share,
            mean,
            var,
        )

    def held(self) -> dict[str, int]:
        """What is held, for a forget's receipt."""
        return {
            "creator_stats": len(self.creators),
            "language_stats": len(self.languages),
            "format_stats": int(np.count_nonzero(self.formats)),
            "duration_stats": int(self.dur[0] > 0),
        }

    def to_state(self, items: ItemMeta) -> dict[str, Any]:
        """JSON-able; creators and languages by name (codes are engine-local)."""
        cn, ln = items.creators.names, items.languages.names
        return {
            "t_ref": self.t_ref,
            "scale": self.scale,
            "total": self.total,
            "creators": {cn[c]: w for c, w in self.creators.items()},
            "languages": {ln[c]: w for c, w in self.languages.items()},
            "formats": self.formats.tolist(),
            "dur": self.dur.tolist(),
        }

    @classmethod
    def from_state(cls, s: dict[str, Any], items: ItemMeta) -> UserMeta:
        obj = cls()
        obj.t_ref = s["t_ref"]
        obj.scale = float(s["scale"])
        obj.total = float(s["total"])
        obj.creators = {items.creators.code(c): float(w) for c, w in s["creators"].items()}
        obj.languages = {items.languages.code(c): float(w) for c, w in s["languages"].items()}
        obj.formats = np.asarray(s["formats"], dtype=np.float64)
        obj.dur = np.asarray(s["dur"], dtype=np.float64)
        return obj

    def top_creators(self, n: int, min_share: float) -> list[int]:
        """The user's ``n`` heaviest creators holding at least ``min_share`` of their events."""
        if not self.creators or self.total <= 0:
            return []
        cut = min_share * (self.total + PRIOR * self.scale)
        best = sorted(self.creators.items(), key=lambda kv: -kv[1])[:n]
        return [c for c, w in best if w >= cut]


def _add_capped(d: dict[int, float], key: int, x: float, cap: int) -> None:
    if key in d or len(d) < cap:
        d[key] = d.get(key, 0.0) + x
        return
    lightest = min(d, key=d.__getitem__)
    if d[lightest] < x:  # the newcomer outweighs the lightest: it takes its place
        del d[lightest]
        d[key] = x
