"""``vidrec import``: turn an interaction log (MovieLens, or named columns) into an event log."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import Progress
from streams.imports.importer import import_file
from streams.imports.rows import (
    META_FIELDS,
    RATING_TYPES,
    BadRow,
    ItemsLayout,
    LogLayout,
    MetaColumns,
    is_movielens,
    movielens_layout,
    parse_rating_map,
    parse_type_map,
    read_header,
    require_columns,
)

# Bad rows printed on stderr; --bad-rows FILE gets them all.
_SHOWN_BAD = 20


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
    m = p.add_argument_group(
        "metadata columns",
        "Read from the items file and from the log's own rows (the earliest row of each item), "
        "wherever the column is; the items file's value wins unless it is empty. An items "
        "file's columns named as vidrec's fields "
        "(creator_id, language, duration_s, width, height, thumbnail_url) are found without a "
        "flag. An empty value is unknown; a bad one makes its row a bad row.",
    )
    m.add_argument("--creator", metavar="COL", help="creator (channel) id column")
    m.add_argument("--language", metavar="COL", help="language tag column: en, pt-BR, pt_BR...")
    m.add_argument(
        "--duration",
        metavar="COL",
        help="duration column: seconds, mm:ss, hh:mm:ss or ISO-8601 (PT4M13S)",
    )
    m.add_argument("--width", metavar="COL", help="frame width column, pixels")
    m.add_argument("--height", metavar="COL", help="frame height column, pixels")
    m.add_argument("--thumbnail", metavar="COL", help="thumbnail URL or file path column")
    p.add_argument("--bad-rows", metavar="FILE", help="write every bad row (line, reason, raw)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_import)


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
    ih = read_header(args.items, args.delimiter) if args.items else []
    item_meta, layout.meta = _meta_columns(args, header, ih)
    require_columns(args.src, header, layout.columns())
    if not args.items:
        return layout, None, fallback

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
        meta=item_meta,
    )
    require_columns(args.items, ih, items.columns())
    return layout, (args.items, items), fallback


def _meta_columns(
    args: argparse.Namespace, header: list[str], items_header: list[str]
) -> tuple[MetaColumns, MetaColumns]:
    """Each metadata flag's column in the items file and in the log, wherever it is.

    An items file's column named as the field of ``VideoPublished`` needs no flag.
    """
    in_items, in_log = MetaColumns(), MetaColumns()
    for name in META_FIELDS:
        col = getattr(args, name)
        if col is None:
            default = _META_DEFAULTS[name]
            if default in items_header:
                setattr(in_items, name, default)
            continue
        if col in items_header:
            setattr(in_items, name, col)
        if col in header:
            setattr(in_log, name, col)
        if col not in items_header and col not in header:
            where = f"{args.src} or {args.items}" if args.items else args.src
            have = ", ".join(dict.fromkeys(header + items_header)) or "none"
            raise _fail(f"--{name}: no column {col!r} in {where} (columns: {have})")
    return in_items, in_log


_META_DEFAULTS = {
    "creator": "creator_id",
    "language": "language",
    "duration": "duration_s",
    "width": "width",
    "height": "height",
    "thumbnail": "thumbnail_url",
}


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
            for bar in bars.values():
                bar.close()
            bars[stage] = Progress(total, stage, args.quiet)
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
