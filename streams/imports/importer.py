"""Turn interaction logs people already have into a vidrec event log (``vidrec import``).

A log of ratings or plays says who touched what and when; vidrec also needs each video's
publication, in stream order, so that a video is recommendable from the moment it exists and not
before. For movie data a film is "published" at the later of the stream's first event and
1 January of its year: nobody can have watched it before it came out, and films older than the
stream were all on the shelf when it began. An explicit publication time (an items file's
column) wins over that rule.

Reading files and checking values is ``streams.imports.rows``; this module builds the messages.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import heapq
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import UserEvent, VideoPublished
from streams.imports.rows import (
    RATING_TYPES,
    BadRow,
    Interaction,
    ItemInfo,
    ItemsLayout,
    LogLayout,
    is_movielens,
    is_parquet,
    movielens_layout,
    parquet_rows,
    parse_rating_map,
    parse_type_map,
    rating_type,
    read_header,
    read_interactions,
    read_items,
    require_columns,
)
from streams.wire.eventlog import write_log

__all__ = ["RATING_TYPES", "ImportReport", "import_file", "import_movielens", "rating_type"]

_SHOWN_BAD = 20


@dataclass
class ImportReport:
    """What an import read, wrote and skipped; ``bad`` holds every skipped row."""

    rows: int = 0
    events: int = 0
    videos: int = 0
    bad: list[BadRow] = field(default_factory=list)
    catalogue_only: int = 0  # videos from the items file that no event touches
    early_events: int = 0  # events before their video's publication (a film seen pre-release)


def _iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _year_start(year: int) -> float:
    return datetime(max(year, 1), 1, 1, tzinfo=UTC).timestamp()


@dataclass
class _Catalogue:
    """Each item's info: the items file's row, else the first row naming it in time order."""

    items_file: dict[str, tuple[int, ItemInfo]]
    source: str
    inline: dict[str, tuple[float, int, ItemInfo]] = field(default_factory=dict)

    def see(self, row: Interaction, info: ItemInfo | None) -> None:
        if info is None:
            return
        best = self.inline.get(row.item)
        if best is None or row.ts < best[0]:  # ties keep the earlier line, as a stable sort
            self.inline[row.item] = (row.ts, row.line, info)

    def info(self, item: str) -> tuple[str, int, ItemInfo]:
        if item in self.items_file:
            line, info = self.items_file[item]
            return self.source, line, info
        if item in self.inline:
            _, line, info = self.inline[item]
            return "", line, info
        return "", 0, ItemInfo()


def to_messages(
    rows: Iterable[tuple[Interaction, ItemInfo | None]],
    *,
    report: ImportReport,
    items: dict[str, tuple[int, ItemInfo]] | None = None,
    items_source: str = "",
    log_source: str = "",
    item_prefix: str = "",
    fallback_title: str = "Item",
) -> Iterator[VideoPublished | UserEvent]:
    """Videos and events in stream order (a video before the events at its own time).

    Events keep file order at equal times. Videos are ordered by publication time, then by
    first appearance in the stream; items only in the items file come after those.
    """
    cat = _Catalogue(items or {}, items_source)
    events: list[Interaction] = []
    for row, info in rows:
        events.append(row)
        cat.see(row, info)
    events.sort(key=lambda r: r.ts)  # stable: ties keep file order
    if not events:
        return iter(())
    first = events[0].ts
    order: dict[str, None] = dict.fromkeys(r.item for r in events)
    report.catalogue_only = sum(1 for item in cat.items_file if item not in order)
    order.update(dict.fromkeys(cat.items_file))

    videos: list[tuple[float, int, VideoPublished]] = []
    published: dict[str, float] = {}
    for n, item in enumerate(order):
        source, line, info = cat.info(item)
        pub = first
        if info.published is not None:
            pub = info.published
        elif info.year is not None:
            pub = max(first, _year_start(info.year))
        published[item] = pub
        fallback = f"{fallback_title} {item.removeprefix(item_prefix)}"
        try:
            video = _video(item, info, pub, fallback)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"]))
            reason = f"item {item}: {where}: {err['msg']} (kept with title {fallback!r})"
            report.bad.append(BadRow(source or log_source, line, reason, ""))
            video = _video(item, ItemInfo(), pub, fallback)
        videos.append((pub, n, video))
    videos.sort(key=lambda x: (x[0], x[1]))
    report.videos, report.events = len(videos), len(events)
    report.early_events = sum(1 for r in events if r.ts < published[r.item])

    merged = heapq.merge(
        ((t, 0, n, v) for t, n, v in videos),
        ((r.ts, 1, n, r) for n, r in enumerate(events)),
    )
    return _messages((m for *_, m in merged), report, log_source)


def _video(item: str, info: ItemInfo, pub: float, fallback: str) -> VideoPublished:
    return VideoPublished(
        video_id=item,
        title=info.title or fallback,
        description=info.description,
        tags=list(info.tags),
        category=info.tags[0] if info.tags else "",
        published_at=_iso(pub),
    )


def _messages(
    merged: Iterator[VideoPublished | Interaction], report: ImportReport, source: str
) -> Iterator[VideoPublished | UserEvent]:
    """Events get ids ``<user>-<video>-<unix s>``, with ``-2``, ``-3``... for repeats that second.

    Stable across imports of the same file, and unique: repeats share their second, so only the
    ids of the current second need remembering.
    """
    second, used = None, set()
    for m in merged:
        if isinstance(m, VideoPublished):
            yield m
            continue
        s = int(m.ts)
        if s != second:
            second, used = s, set()
        base = f"{m.user}-{m.item}-{s}"
        event_id, k = base, 1
        while event_id in used:
            k += 1
            event_id = f"{base}-{k}"
        used.add(event_id)
        if len(event_id) > 256:
            event_id = "h" + hashlib.sha256(event_id.encode()).hexdigest()
        try:
            yield UserEvent(
                event_id=event_id, user_id=m.user, video_id=m.item, type=m.type, ts=_iso(m.ts)
            )
        except ValidationError as exc:  # ids and times are checked on reading; a safety net
            report.events -= 1
            report.bad.append(BadRow(source, m.line, str(exc.errors()[0]["msg"]), ""))


def import_file(
    src: str | Path,
    dst: str | Path,
    layout: LogLayout,
    *,
    items: tuple[str | Path, ItemsLayout] | None = None,
    fallback_title: str = "Item",
    delimiter: str | None = None,
    on_progress: Callable[[str, int, int | None], None] | None = None,
) -> ImportReport:
    """Read ``src`` (and an items file), write the event log ``dst``; bad rows are in the report.

    ``on_progress(stage, done, total)`` is called now and then while reading and writing.
    """
    report = ImportReport()
    catalogue: dict[str, tuple[int, ItemInfo]] = {}
    if items is not None:
        catalogue = read_items(items[0], items[1], on_bad=report.bad.append, delimiter=delimiter)
    total = parquet_rows(src) if is_parquet(src) else None

    def read(n: int) -> None:
        report.rows = n
        if on_progress is not None:
            on_progress("read", n, total)

    rows = read_interactions(
        src, layout, on_bad=report.bad.append, delimiter=delimiter, on_progress=read
    )
    msgs = to_messages(
        rows,
        report=report,
        items=catalogue,
        items_source=str(items[0]) if items else "",
        log_source=str(src),
        item_prefix=layout.item_prefix,
        fallback_title=fallback_title,
    )
    if on_progress is not None:
        msgs = _progress(msgs, lambda n: on_progress("write", n, report.events + report.videos))
    write_log(dst, msgs)
    return report


def _progress(msgs: Iterator[Any], tick: Callable[[int], None]) -> Iterator[Any]:
    n = 0
    for n, m in enumerate(msgs, start=1):
        if n % 10_000 == 0:
            tick(n)
        yield m
    tick(n)


def import_movielens(src: str | Path, dst: str | Path, *, graded: bool = False) -> ImportReport:
    """The MovieLens layout ``movieId,title,year,genres,userId,rating,timestamp``."""
    layout = movielens_layout(graded, header=read_header(src))
    return import_file(src, dst, layout, fallback_title="Movie")


# -- the command -------------------------------------------------------------------------------
def _fail(msg: str) -> SystemExit:
    return SystemExit(f"vidrec import: {msg}")


def _layouts(args: argparse.Namespace) -> tuple[LogLayout, tuple[str, ItemsLayout] | None, str]:
    """The log's layout, the items file's, and the fallback title word, from the arguments."""
    header = read_header(args.src, args.delimiter)
    named = [c for c in (args.user, args.item, args.time) if c]
    try:
        rating_map = parse_rating_map(args.rating_map) if args.rating_map else RATING_TYPES
        type_map = parse_type_map(args.type_map)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if args.type and args.rating:
        raise _fail("give --type or --rating, not both")
    if not named and not args.type and not args.rating and is_movielens(header):
        graded = (args.graded or args.rating_map is not None) and not args.watch_only
        layout, fallback = movielens_layout(graded, rating_map, header), "Movie"
    elif len(named) < 3:
        raise _fail(
            f"{args.src} is not the MovieLens layout; name its columns with --user, --item and "
            f"--time (columns: {', '.join(header) or 'none'})"
        )
    else:
        layout = LogLayout(
            user=args.user,
            item=args.item,
            time=args.time,
            type=args.type,
            rating=args.rating,
            graded=not args.watch_only,
            type_map=type_map,
            rating_map=rating_map,
            time_unit=args.time_unit,
            user_prefix=args.user_prefix,
            item_prefix=args.item_prefix,
        )
        fallback = "Item"
    if args.time_unit != "auto":
        layout.time_unit = args.time_unit
    require_columns(args.src, header, layout.columns())
    if not args.items:
        return layout, None, fallback
    ih = read_header(args.items, args.delimiter)

    def pick(option: str | None, *names: str) -> str | None:
        return option or next((n for n in names if n in ih), None)

    items = ItemsLayout(
        item_id=args.item_id or layout.item,
        title=pick(args.title, "title"),
        tags=pick(args.tags, "tags", "genres"),
        tags_sep=args.tags_sep,
        year=pick(args.year, "year"),
        description=pick(args.description, "description"),
        published=args.published,
        time_unit=args.time_unit,
        item_prefix=layout.item_prefix,
        year_in_title=fallback == "Movie" and not args.year and "year" not in ih,
    )
    require_columns(args.items, ih, items.columns())
    return layout, (args.items, items), fallback


def _write_bad_rows(path: str, bad: list[BadRow]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        w = csv.writer(f)
        w.writerow(["file", "line", "reason", "raw"])
        w.writerows((b.source, b.line, b.reason, b.raw) for b in bad)


def cmd_import(args: argparse.Namespace) -> int:
    for path in (args.src, args.items):
        if path and not Path(path).is_file():
            raise _fail(f"no such file: {path}")
    try:
        layout, items, fallback = _layouts(args)
    except (OSError, EOFError, ValueError) as exc:  # not gzip, not Parquet, a missing column
        raise _fail(str(exc)) from None
    bars: dict[str, Any] = {}

    def progress(stage: str, n: int, total: int | None) -> None:
        if stage not in bars:
            if n < 10_000:  # a small input is done before a bar could say anything
                return
            from streams.cli.commands import _Progress

            for bar in bars.values():
                bar.close()
            bars[stage] = _Progress(total, stage, args.quiet)
        bars[stage](n)

    try:
        report = import_file(
            args.src,
            args.out,
            layout,
            items=items,
            fallback_title=fallback,
            delimiter=args.delimiter,
            on_progress=progress,
        )
    except (OSError, EOFError, ValueError) as exc:  # a corrupt gzip or Parquet file, a full disk
        raise _fail(str(exc)) from None
    finally:
        for bar in bars.values():
            bar.close()
    for b in report.bad[:_SHOWN_BAD]:
        print(f"{b.source}:{b.line}: skipped: {b.reason}", file=sys.stderr)
    if len(report.bad) > _SHOWN_BAD:
        more = len(report.bad) - _SHOWN_BAD
        where = f"all in {args.bad_rows}" if args.bad_rows else "--bad-rows FILE lists them all"
        print(f"... and {more} more bad rows ({where})", file=sys.stderr)
    if args.bad_rows:
        _write_bad_rows(args.bad_rows, report.bad)
    extra = ""
    if report.catalogue_only:
        extra += f"; {report.catalogue_only} videos from the items file have no events"
    if report.early_events:
        extra += f"; {report.early_events} events precede their video's publication"
    print(
        f"imported {report.events} events on {report.videos} videos from {report.rows} rows "
        f"({len(report.bad)} bad rows skipped) -> {args.out}{extra}",
        file=sys.stderr,
    )
    return 1 if report.rows and not report.events else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="turn an interaction log (MovieLens, or CSV/Parquet with named columns) into an "
        "event log",
        description="Turn an interaction log into a vidrec event log: videos (published at "
        "their items file time, else the later of the stream's start and 1 January of their "
        "year, else the stream's start) and user events, in time order. The MovieLens layout "
        "(movieId,title,year,genres,userId,rating,timestamp) is recognised by its header; any "
        "other CSV/TSV/Parquet needs --user, --item and --time. Bad rows are reported with "
        "their line (row for Parquet) and skipped.",
    )
    p.add_argument("src", help="interaction log: .csv, .tsv (.gz ok) or .parquet")
    p.add_argument("--out", "-o", required=True, help="event log to write (.jsonl or .jsonl.gz)")
    g = p.add_argument_group("columns of the log (not needed for the MovieLens layout)")
    g.add_argument("--user", metavar="COL", help="user id column")
    g.add_argument("--item", metavar="COL", help="item (video) id column")
    g.add_argument("--time", metavar="COL", help="time column: unix s/ms/us/ns or ISO-8601")
    g.add_argument("--type", metavar="COL", help="event type column (see --type-map)")
    g.add_argument("--rating", metavar="COL", help="rating column (see --rating-map)")
    g.add_argument(
        "--time-unit",
        choices=["auto", "s", "ms", "us", "ns"],
        default="auto",
        help="unit of numeric times; auto (default) tells them apart by magnitude; ISO-8601 "
        "strings without an offset are UTC",
    )
    g.add_argument(
        "--type-map",
        metavar="MAP",
        help="extra VALUE=TYPE pairs, e.g. 'view=watch,buy=like'; vidrec's own type names and "
        "common synonyms (view, click, finished, favorite, ...) are known; other values are bad "
        "rows",
    )
    g.add_argument(
        "--rating-map",
        metavar="MAP",
        help="FLOOR=TYPE steps, '*' for any lower rating; default '5=like,4=complete,3=watch,"
        "*=play' (half steps round down)",
    )
    g.add_argument(
        "--graded",
        action="store_true",
        help="MovieLens layout: map ratings through the rating map (default: every rating is a "
        "watch, as an act of watching; --rating-map implies --graded); a --rating column is "
        "graded unless --watch-only",
    )
    g.add_argument("--watch-only", action="store_true", help="every row is a watch")
    g.add_argument("--user-prefix", default="", help="prepended to user ids (MovieLens: u)")
    g.add_argument("--item-prefix", default="", help="prepended to item ids (MovieLens: m)")
    g.add_argument("--delimiter", help="field separator (default: tab for .tsv, else comma)")
    i = p.add_argument_group("items file (title, tags, year...; columns named so are found)")
    i.add_argument("--items", metavar="FILE", help="items file: .csv, .tsv (.gz ok) or .parquet")
    i.add_argument("--item-id", metavar="COL", help="item id column (default: the log's --item)")
    i.add_argument("--title", metavar="COL", help="title column (default: 'title' if present)")
    i.add_argument("--tags", metavar="COL", help="tags column (default: 'tags' or 'genres')")
    i.add_argument("--tags-sep", help="tag separator (default: '|' if the value has one, else ',')")
    i.add_argument("--year", metavar="COL", help="release year column (default: 'year')")
    i.add_argument(
        "--description", metavar="COL", help="description column (default: 'description')"
    )
    i.add_argument(
        "--published", metavar="COL", help="publication time column; wins over the year rule"
    )
    p.add_argument("--bad-rows", metavar="FILE", help="write every bad row (line, reason, raw)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_import)
