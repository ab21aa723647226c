"""Read the rows of an interaction log or items file (CSV, TSV, Parquet) into checked values.

This half of ``vidrec import`` knows files and columns, not messages: each row becomes an
``Interaction`` (who, what, when, which event type) or an ``ItemInfo``, or a ``BadRow`` that says
on which line and why, so that one bad row costs one row and never the import.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas import EventType
from streams.wire.eventlog import open_text

# Graded feedback (a 1-5 rating) as the event type a video platform would have seen.
RATING_TYPES: tuple[tuple[float, EventType], ...] = (
    (5.0, EventType.LIKE),
    (4.0, EventType.COMPLETE),
    (3.0, EventType.WATCH),
    (float("-inf"), EventType.PLAY),
)

# What logs in the wild call vidrec's event types (matched case-insensitively, after vidrec's own
# names); ``--type-map`` adds to or overrides these.
TYPE_SYNONYMS: dict[str, EventType] = {
    "view": EventType.WATCH,
    "viewed": EventType.WATCH,
    "watched": EventType.WATCH,
    "click": EventType.PLAY,
    "start": EventType.PLAY,
    "started": EventType.PLAY,
    "completed": EventType.COMPLETE,
    "finish": EventType.COMPLETE,
    "finished": EventType.COMPLETE,
    "liked": EventType.LIKE,
    "favorite": EventType.LIKE,
    "favourite": EventType.LIKE,
    "upvote": EventType.LIKE,
    "shared": EventType.SHARE,
    "skipped": EventType.SKIP,
    "disliked": EventType.DISLIKE,
    "downvote": EventType.DISLIKE,
    "shown": EventType.IMPRESSION,
}

# The MovieLens layout (as in /work/shared/data and `vidrec data fetch movielens`).
MOVIELENS_COLUMNS = ("movieId", "userId", "rating", "timestamp")
NO_GENRES = "(no genres listed)"

_CONTROL = re.compile(r"[\x00-\x1f]")
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_MAX_RAW = 1000


class RowError(ValueError):
    """Why one row cannot be imported (the message is the reason printed with its line)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A skipped row: ``line`` is the file line for text files, the row number for Parquet."""

    source: str
    line: int
    reason: str
    raw: str


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What an items file (or a log's own columns) says about an item.

    ``None``, ``""`` and ``0`` mean unknown, as in ``VideoPublished``.
    """

    title: str = ""
    tags: tuple[str, ...] = ()
    year: int | None = None
    description: str = ""
    published: float | None = None
    creator: str | None = None
    language: str = ""
    duration: float = 0.0
    width: int = 0
    height: int = 0
    thumbnail: str | None = None

    def with_meta_from(self, other: ItemInfo) -> ItemInfo:
        """This info with its unknown metadata taken from ``other``.

        An items file's row wins over the log's own columns, field by field.
        """
        fill = {f: getattr(other, f) for f in META_FIELDS if not getattr(self, f)}
        return dataclasses.replace(self, **fill) if any(fill.values()) else self


# The metadata fields an import can map from named columns (``vidrec import --creator COL``...).
META_FIELDS = ("creator", "language", "duration", "width", "height", "thumbnail")


@dataclass
class MetaColumns:
    """Which column holds each metadata field (``None``: not read)."""

    creator: str | None = None
    language: str | None = None
    duration: str | None = None
    width: str | None = None
    height: str | None = None
    thumbnail: str | None = None

    def named(self) -> list[str | None]:
        """The column per field of ``META_FIELDS``, in that order."""
        return [getattr(self, f) for f in META_FIELDS]

    def columns(self) -> list[str]:
        return [c for c in self.named() if c is not None]


@dataclass(frozen=True, slots=True)
class Interaction:
    """One good row of an interaction log: ids already carry their prefixes."""

    line: int
    ts: float
    user: str
    item: str
    type: EventType


# -- field parsers -----------------------------------------------------------------------------
def rating_type(
    rating: float, scale: Sequence[tuple[float, EventType]] = RATING_TYPES
) -> EventType:
    """The type of the first step of ``scale`` (floors, descending) the rating reaches."""
    for floor, t in scale:
        if rating >= floor:
            return t
    raise RowError(f"rating {rating:g} is below the rating map's lowest step {scale[-1][0]:g}")


def parse_rating_map(text: str) -> tuple[tuple[float, EventType], ...]:
    """``"5=like,4=complete,3=watch,*=play"``: a rating at or above a floor is that type.

    ``*`` is every lower rating; without it a rating under the lowest floor is a bad row.
    """
    steps: list[tuple[float, EventType]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        floor_s, sep, type_s = part.partition("=")
        if not sep:
            raise ValueError(f"rating map entry {part!r} is not FLOOR=TYPE")
        floor = float("-inf") if floor_s.strip() == "*" else float(floor_s)
        steps.append((floor, event_type_named(type_s.strip())))
    if not steps:
        raise ValueError("the rating map is empty")
    return tuple(sorted(steps, key=lambda s: -s[0]))


def event_type_named(name: str) -> EventType:
    try:
        return EventType(name.lower())
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise ValueError(f"{name!r} is not a vidrec event type ({known})") from None


def parse_type_map(text: str | None = None) -> dict[str, EventType]:
    """vidrec's own names, the usual synonyms, then ``"view=watch,buy=like"`` on top."""
    mapping = {t.value: t for t in EventType} | TYPE_SYNONYMS
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        src, sep, dst = part.partition("=")
        if not sep:
            raise ValueError(f"type map entry {part!r} is not VALUE=TYPE")
        mapping[src.strip().lower()] = event_type_named(dst.strip())
    return mapping


def checked_id(value: Any, what: str, prefix: str = "") -> str:
    """An id the schema accepts (1-256 characters, no control characters, valid UTF-8)."""
    s = _text(value)
    if not s:
        raise RowError(f"missing {what}")
    s = prefix + s
    if len(s) > 256:
        raise RowError(f"{what} is longer than 256 characters")
    if _CONTROL.search(s):
        raise RowError(f"{what} contains a control character")
    try:
        s.encode()
    except UnicodeEncodeError:
        raise RowError(f"{what} is not valid UTF-8") from None
    return s


_UNIT_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def parse_time(value: Any, unit: str = "auto") -> float:
    """Unix seconds from unix s/ms/us/ns (``auto``: by magnitude) or an ISO-8601 string.

    A time without a UTC offset is taken as UTC.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _unix(float(value), unit)
    else:
        s = _text(value)
        if not s:
            raise RowError("missing time")
        try:
            return _unix(float(s), unit)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise RowError(f"time {s[:40]!r} is neither unix time nor ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return _in_range(dt.timestamp())


def _unix(x: float, unit: str) -> float:
    if not math.isfinite(x):
        raise RowError(f"time {x} is not a number")
    if unit == "auto":
        ax = abs(x)
        unit = "s" if ax < 1e11 else "ms" if ax < 1e14 else "us" if ax < 1e17 else "ns"
    return _in_range(x / _UNIT_SCALE[unit])


_MIN_TS = datetime(1, 1, 2, tzinfo=UTC).timestamp()
_MAX_TS = datetime(9999, 12, 31, tzinfo=UTC).timestamp()


def _in_range(ts: float) -> float:
    if not _MIN_TS <= ts <= _MAX_TS:
        raise RowError(f"time {ts:g} s is out of range (years 1-9999)")
    return ts


def parse_rating(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    else:
        s = _text(value)
        if not s:
            raise RowError("missing rating")
        try:
            x = float(s)
        except ValueError:
            raise RowError(f"rating {s[:40]!r} is not a number") from None
    if not math.isfinite(x):
        raise RowError(f"rating {x} is not a number")
    return x


def parse_year(value: Any) -> int | None:
    """A year, or ``None`` when missing (empty or R's ``NA``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and math.isnan(value):
            return None
        x = float(value)
    else:
        s = _text(value)
        if not s or s == "NA":
            return None
        try:
            x = float(s)
        except ValueError:
            raise RowError(f"year {s[:40]!r} is not a number") from None
    if not 1 <= x <= 9999:
        raise RowError(f"year {x:g} is out of range")
    return int(x)


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_MAX_DURATION_S = 30 * 24 * 3600.0  # as VideoPublished.duration_s
_MAX_PIXELS = 100_000
_ISO_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_CLOCK = re.compile(r"(\d+):(\d\d)(?::(\d\d))?(\.\d+)?")  # mm:ss or hh:mm:ss


def _unknown(value: Any) -> bool:
    """Empty, null, R's ``NA`` or a float NaN (a pandas-written null): the field is unknown."""
    if isinstance(value, float):
        return math.isnan(value)
    return value is None or _text(value) in ("", "NA")


def parse_duration(value: Any) -> float:
    """Seconds from a number, ``mm:ss``, ``hh:mm:ss`` or ISO-8601 (``PT4M13S``); 0 if unknown."""
    if _unknown(value):
        return 0.0
    if isinstance(value, timedelta):  # a Parquet duration column
        x = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    else:
        s = _text(value)
        try:
            x = float(s)
        except ValueError:
            x = _clock_or_iso(s)
    if not (math.isfinite(x) and 0.0 <= x <= _MAX_DURATION_S):
        raise RowError(f"duration {x:g} s is out of range (0 to 30 days)")
    return x


def _clock_or_iso(s: str) -> float:
    if m := _CLOCK.fullmatch(s):
        a, b, c, frac = m.groups()
        h, mi, sec = (int(a), int(b), int(c)) if c else (0, int(a), int(b))
        if sec < 60 and (mi < 60 or not c):
            return h * 3600 + mi * 60 + sec + float(frac or 0)
    elif (m := _ISO_DURATION.fullmatch(s.upper())) and any(m.groups()):
        d, h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
        return ((d * 24 + h) * 60 + mi) * 60 + sec
    raise RowError(f"duration {s[:40]!r} is neither seconds, mm:ss, hh:mm:ss nor ISO-8601")


def parse_pixels(value: Any, what: str) -> int:
    """A width or height in pixels (a whole number, 0 to 100,000); 0 if unknown."""
    if _unknown(value):
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
    else:
        s = _text(value)
        try:
            x = float(s)
        except ValueError:
            raise RowError(f"{what} {s[:40]!r} is not a number") from None
    if not (x.is_integer() and 0 <= x <= _MAX_PIXELS):
        raise RowError(f"{what} {x:g} is not a whole number of pixels from 0 to {_MAX_PIXELS}")
    return int(x)


def parse_language(value: Any) -> str:
    """A BCP-47 language tag (``en``, ``pt-BR``; ``pt_BR`` is read as ``pt-BR``); "" if unknown."""
    if _unknown(value):
        return ""
    s = _text(value).replace("_", "-")
    if s.lower() == "und":  # BCP-47's "undetermined"
        return ""
    if len(s) > 35 or not _LANGUAGE_TAG.fullmatch(s):
        raise RowError(f"language {s[:40]!r} is not a language tag (en, pt-BR, ...)")
    return s


def _optional_text(value: Any, what: str, max_len: int) -> str | None:
    if _unknown(value):
        return None
    s = _text(value)
    if len(s) > max_len:
        raise RowError(f"{what} is longer than {max_len} characters")
    if _CONTROL.search(s):
        raise RowError(f"{what} contains a control character")
    return s


def parse_meta(values: Sequence[Any]) -> dict[str, Any]:
    """``ItemInfo`` keyword arguments from one value per ``META_FIELDS`` (``None``: no column)."""
    creator, language, duration, width, height, thumbnail = values
    return {
        "creator": _optional_text(creator, "creator id", 256),
        "language": parse_language(language),
        "duration": parse_duration(duration),
        "width": parse_pixels(width, "width"),
        "height": parse_pixels(height, "height"),
        "thumbnail": _optional_text(thumbnail, "thumbnail", 2048),
    }


def split_tags(value: Any, sep: str | None = None) -> tuple[str, ...]:
    """Tags separated by ``sep``, or by ``|`` when the value has one and ``,`` otherwise."""
    if isinstance(value, (list, tuple)):
        parts = [_text(v) for v in value]
    else:
        s = _text(value)
        parts = s.split(sep or ("|" if "|" in s else ",")) if s else []
    return tuple(p for p in (p.strip() for p in parts) if p and p != NO_GENRES)


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a Parquet float id column, 31.0 -> "31"
    return str(value).strip()


# -- files -------------------------------------------------------------------------------------
def is_parquet(path: str | Path) -> bool:
    return str(path).lower().endswith((".parquet", ".pq"))


def read_header(path: str | Path, delimiter: str | None = None) -> list[str]:
    """The column names of a CSV/TSV (first line) or Parquet file (its schema)."""
    with _named_errors(path):
        if is_parquet(path):
            return list(_parquet().ParquetFile(path).schema_arrow.names)
        with open_text(path) as f:
            return _header(csv.reader(f, delimiter=_delimiter(path, delimiter)))


@contextlib.contextmanager
def _named_errors(path: str | Path) -> Iterator[None]:
    """A file that is not what its name says (bad gzip, not Parquet) fails naming the file."""
    try:
        yield
    except MissingColumns:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _header(reader: Any) -> list[str]:
    header = next(reader, None) or []
    if header:
        header[0] = header[0].removeprefix("\ufeff")  # a byte-order mark, as Excel writes
    return header


def records(
    path: str | Path, columns: Sequence[str], delimiter: str | None = None
) -> Iterator[tuple[int, list[Any] | str, Sequence[Any]]]:
    """``(line, values of columns, whole row)`` per row; for a malformed row, why instead of values.

    CSV lines count from 1 with the header as line 1, and a quoted field spanning lines is
    reported at its first line; Parquet rows count from 1.
    """
    with _named_errors(path):
        if is_parquet(path):
            yield from _parquet_records(path, columns)
        else:
            yield from _csv_records(path, columns, _delimiter(path, delimiter))


def _delimiter(path: str | Path, delimiter: str | None) -> str:
    if delimiter:
        return "\t" if delimiter in ("tab", "\\t") else delimiter
    name = str(path).lower().removesuffix(".gz")
    return "\t" if name.endswith(".tsv") else ","


def _csv_records(
    path: str | Path, columns: Sequence[str], delimiter: str
) -> Iterator[tuple[int, list[Any] | str, Sequence[Any]]]:
    with open_text(path) as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = _header(reader)
        require_columns(path, header, columns)
        at = {name: i for i, name in enumerate(header)}
        idx = [at[c] for c in columns]
        width = len(header)
        line = reader.line_num + 1
        while True:
            try:
                rec = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # a NUL byte, an overlong field: this row only
                start, line = line, reader.line_num + 1
                yield start, f"unreadable CSV: {exc}", []
                continue
            start, line = line, reader.line_num + 1
            if not rec:
                continue
            if len(rec) == width:
                yield start, [rec[i] for i in idx], rec
            else:
                yield start, f"{len(rec)} fields where the header has {width}", rec


def raw_row(values: Sequence[Any]) -> str:
    """A row's values as one CSV line (for reports), cut at 1,000 characters."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(["" if v is None else v for v in values])
    return buf.getvalue()[:_MAX_RAW]


def _parquet_records(
    path: str | Path, columns: Sequence[str]
) -> Iterator[tuple[int, list[Any] | str, Sequence[Any]]]:
    pf = _parquet().ParquetFile(path)
    require_columns(path, pf.schema_arrow.names, columns)
    row = 0
    for batch in pf.iter_batches(batch_size=65_536, columns=list(dict.fromkeys(columns))):
        cols = batch.to_pydict()
        for values in zip(*(cols[c] for c in columns), strict=True):
            row += 1
            yield row, list(values), values


def parquet_rows(path: str | Path) -> int:
    return _parquet().ParquetFile(path).metadata.num_rows


def _parquet() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(
            "vidrec: reading Parquet needs pyarrow: pip install 'vidrec[data]'"
        ) from None
    return pq


# -- layouts -----------------------------------------------------------------------------------
@dataclass
class LogLayout:
    """Which columns of an interaction log hold what, and how values become event types.

    ``type`` maps a column's values through ``type_map``; otherwise ``rating`` (when given) is
    checked and, when ``graded``, mapped through ``rating_map``; otherwise every row is a watch.
    ``title``/``tags``/``year`` are item columns carried on every row (the MovieLens layout), as
    are the ``meta`` columns (creator, language, duration...) of a log that names them.
    """

    user: str
    item: str
    time: str
    type: str | None = None
    rating: str | None = None
    graded: bool = False
    type_map: dict[str, EventType] = field(default_factory=parse_type_map)
    rating_map: tuple[tuple[float, EventType], ...] = RATING_TYPES
    time_unit: str = "auto"
    user_prefix: str = ""
    item_prefix: str = ""
    title: str | None = None
    tags: str | None = None
    tags_sep: str | None = None
    year: str | None = None
    meta: MetaColumns = field(default_factory=MetaColumns)

    def columns(self) -> list[str]:
        cols = [self.user, self.item, self.time, self.type, self.rating]
        cols += [self.title, self.tags, self.year]
        return [c for c in cols if c is not None] + self.meta.columns()


def movielens_layout(
    graded: bool = False, rating_map: Any = RATING_TYPES, header: Sequence[str] | None = None
) -> LogLayout:
    """``movieId,title,year,genres,userId,rating,timestamp``: users ``u<id>``, films ``m<id>``.

    The item columns are optional (GroupLens' own ``ratings.csv`` has only the other four):
    those not in ``header`` are not read.
    """
    layout = LogLayout(
        user="userId",
        item="movieId",
        time="timestamp",
        rating="rating",
        graded=graded,
        rating_map=rating_map,
        time_unit="s",
        user_prefix="u",
        item_prefix="m",
        title="title",
        tags="genres",
        tags_sep="|",
        year="year",
    )
    if header is not None:
        layout.title, layout.tags, layout.year = (
            c if c in header else None for c in (layout.title, layout.tags, layout.year)
        )
    return layout


def is_movielens(header: Sequence[str]) -> bool:
    return set(MOVIELENS_COLUMNS) <= set(header)


class MissingColumns(ValueError):
    """A file lacks a column it was told to read."""


def require_columns(path: str | Path, header: Sequence[str], columns: Sequence[str]) -> None:
    missing = [c for c in dict.fromkeys(columns) if c not in header]
    if missing:
        have = ", ".join(header) if header else "none"
        raise MissingColumns(f"{path}: no column {', '.join(map(repr, missing))} (columns: {have})")


def read_interactions(
    path: str | Path,
    layout: LogLayout,
    *,
    on_bad: Callable[[BadRow], None],
    delimiter: str | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Interaction, ItemInfo | None]]:
    """Good rows of an interaction log in file order, each with its inline item info (if any).

    ``on_progress(rows read)`` is called every 10,000 rows and once at the end.
    """
    cols = layout.columns()
    pos = {c: i for i, c in enumerate(cols)}
    src = str(path)
    n = 0
    for n, (line, values, raw) in enumerate(records(path, cols, delimiter), start=1):
        if on_progress is not None and n % 10_000 == 0:
            on_progress(n)
        if isinstance(values, str):
            on_bad(BadRow(src, line, values, raw_row(raw)))
            continue
        try:
            yield _interaction(line, values, pos, layout)
        except RowError as exc:
            on_bad(BadRow(src, line, str(exc), raw_row(raw)))
    if on_progress is not None:
        on_progress(n)


def _interaction(
    line: int, v: list[Any], pos: dict[str, int], lay: LogLayout
) -> tuple[Interaction, ItemInfo | None]:
    # interned: a 10M-row log names far fewer users and items than it has rows
    user = sys.intern(checked_id(v[pos[lay.user]], "user id", lay.user_prefix))
    item = sys.intern(checked_id(v[pos[lay.item]], "item id", lay.item_prefix))
    ts = parse_time(v[pos[lay.time]], lay.time_unit)
    if lay.type is not None:
        name = _text(v[pos[lay.type]])
        t = lay.type_map.get(name.lower())
        if t is None:
            raise RowError(f"unknown event type {name[:40]!r}" if name else "missing event type")
    elif lay.rating is not None:
        rating = parse_rating(v[pos[lay.rating]])
        t = rating_type(rating, lay.rating_map) if lay.graded else EventType.WATCH
    else:
        t = EventType.WATCH
    info = None
    meta = lay.meta.named()
    if lay.title or lay.tags or lay.year or any(meta):
        title, tags, year = (v[pos[c]] if c else None for c in (lay.title, lay.tags, lay.year))
        if isinstance(tags, list):  # a Parquet list column
            tags = tuple(tags)
        values = tuple(_hashable(v[pos[c]]) if c else None for c in meta)
        info = _inline_info(title, tags, year, lay.tags_sep, values)
    return Interaction(line, ts, user, item, t), info


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value  # a Parquet list column


@functools.lru_cache(maxsize=1 << 16)
def _inline_info(
    title: Any, tags: Any, year: Any, sep: str | None, meta: tuple[Any, ...]
) -> ItemInfo:
    """Cached: a log that carries item columns repeats them on every row of the item."""
    return ItemInfo(
        title=_text(title), tags=split_tags(tags, sep), year=parse_year(year), **parse_meta(meta)
    )


@dataclass
class ItemsLayout:
    """Columns of an items file; only ``item_id`` is required."""

    item_id: str
    title: str | None = None
    tags: str | None = None
    tags_sep: str | None = None
    year: str | None = None
    description: str | None = None
    published: str | None = None
    time_unit: str = "auto"
    item_prefix: str = ""
    year_in_title: bool = False  # MovieLens' movies.csv: "Toy Story (1995)"
    meta: MetaColumns = field(default_factory=MetaColumns)

    def columns(self) -> list[str]:
        cols = [self.item_id, self.title, self.tags, self.year, self.description, self.published]
        return [c for c in cols if c is not None] + self.meta.columns()


def read_items(
    path: str | Path,
    layout: ItemsLayout,
    *,
    on_bad: Callable[[BadRow], None],
    delimiter: str | None = None,
) -> dict[str, tuple[int, ItemInfo]]:
    """Item id -> (line, info); a later row for the same id replaces an earlier one."""
    cols = layout.columns()
    pos = {c: i for i, c in enumerate(cols)}
    src = str(path)
    items: dict[str, tuple[int, ItemInfo]] = {}
    for line, values, raw in records(path, cols, delimiter):
        if isinstance(values, str):
            on_bad(BadRow(src, line, values, raw_row(raw)))
            continue
        try:
            item = checked_id(values[pos[layout.item_id]], "item id", layout.item_prefix)
            items[item] = (line, _item_info(values, pos, layout))
        except RowError as exc:
            on_bad(BadRow(src, line, str(exc), raw_row(raw)))
    return items


def _item_info(v: list[Any], pos: dict[str, int], lay: ItemsLayout) -> ItemInfo:
    published = None
    if lay.published is not None:
        value = v[pos[lay.published]]
        if _text(value):
            published = parse_time(value, lay.time_unit)
    title = _text(v[pos[lay.title]]) if lay.title else ""
    year = parse_year(v[pos[lay.year]]) if lay.year else None
    if lay.year_in_title and (m := _TITLE_YEAR.search(title)):
        title, year = title[: m.start()], year if year is not None else int(m[1])
    return ItemInfo(
        title=title,
        tags=split_tags(v[pos[lay.tags]], lay.tags_sep) if lay.tags else (),
        year=year,
        description=_text(v[pos[lay.description]]) if lay.description else "",
        published=published,
        **parse_meta([v[pos[c]] if c else None for c in lay.meta.named()]),
    )
