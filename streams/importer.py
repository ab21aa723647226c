"""Turn interaction logs people already have into a vidrec event log (``vidrec import``).

A log of ratings or plays says who touched what and when; vidrec also needs each video's
publication, in stream order, so that a video is recommendable from the moment it exists and not
before. For movie data a film is "published" at the later of the stream's first event and
1 January of its year: nobody can have watched it before it came out, and films older than the
stream were all on the shelf when it began.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from schemas import EventType, UserEvent, VideoPublished
from streams.eventlog import open_text, write_log

# Graded feedback (a 1-5 rating) as the event type a video platform would have seen.
RATING_TYPES: tuple[tuple[float, EventType], ...] = (
    (5.0, EventType.LIKE),
    (4.0, EventType.COMPLETE),
    (3.0, EventType.WATCH),
    (float("-inf"), EventType.PLAY),
)


def rating_type(rating: float) -> EventType:
    """5 -> like, 4 -> complete, 3 -> watch, below 3 -> play (half steps round down)."""
    for floor, t in RATING_TYPES:
        if rating >= floor:
            return t
    return EventType.PLAY


@dataclass
class ImportReport:
    rows: int = 0
    events: int = 0
    videos: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Row:
    user: str
    item: str
    ts: float
    rating: float | None
    title: str
    year: int | None
    genres: list[str]


def _movielens_rows(path: str | Path, report: ImportReport) -> Iterator[_Row]:
    """Rows of the MovieLens layout ``movieId,title,year,genres,userId,rating,timestamp``."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        need = {"movieId", "userId", "rating", "timestamp"}
        missing = need - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not the MovieLens layout, missing columns {sorted(missing)}")
        for lineno, rec in enumerate(reader, start=2):
            report.rows += 1
            try:
                year_s = (rec.get("year") or "").strip()
                genres = (rec.get("genres") or "").strip()
                yield _Row(
                    user=str(rec["userId"]).strip(),
                    item=str(rec["movieId"]).strip(),
                    ts=float(rec["timestamp"]),
                    rating=float(rec["rating"]),
                    title=(rec.get("title") or "").strip(),
                    year=int(float(year_s)) if year_s and year_s != "NA" else None,
                    genres=[g for g in genres.split("|") if g and g != "(no genres listed)"],
                )
            except (TypeError, ValueError) as exc:
                report.bad.append((lineno, f"{type(exc).__name__}: {exc}"))


def _iso(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def to_messages(
    rows: Iterable[_Row], *, graded: bool, report: ImportReport
) -> list[VideoPublished | UserEvent]:
    """Videos and events in stream order (a video before the events at its own time)."""
    rows = sorted(rows, key=lambda r: r.ts)  # stable: ties keep file order
    if not rows:
        return []
    first = rows[0].ts
    items: dict[str, _Row] = {}
    for r in rows:
        items.setdefault(r.item, r)
    videos: list[tuple[float, int, VideoPublished]] = []
    for n, (item, r) in enumerate(items.items()):
        pub = first
        if r.year is not None:
            pub = max(first, datetime(max(r.year, 1), 1, 1, tzinfo=UTC).timestamp())
        title = r.title or f"Movie {item}"
        videos.append(
            (
                pub,
                n,
                VideoPublished(
                    video_id=f"m{item}",
                    title=title,
                    tags=r.genres,
                    category=r.genres[0] if r.genres else "",
                    published_at=_iso(pub),
                ),
            )
        )
    videos.sort(key=lambda x: (x[0], x[1]))
    events: list[tuple[float, int, UserEvent]] = []
    for n, r in enumerate(rows):
        t = rating_type(r.rating) if graded and r.rating is not None else EventType.WATCH
        events.append(
            (
                r.ts,
                n,
                UserEvent(
                    event_id=f"u{r.user}-m{r.item}-{int(r.ts)}",
                    user_id=f"u{r.user}",
                    video_id=f"m{r.item}",
                    type=t,
                    ts=_iso(r.ts),
                ),
            )
        )
    report.videos, report.events = len(videos), len(events)
    # videos first at equal times: key (ts, 0|1, n)
    merged = heapq.merge(((t, 0, n, v) for t, n, v in videos), ((t, 1, n, e) for t, n, e in events))
    return [m for *_, m in merged]


def import_movielens(src: str | Path, dst: str | Path, *, graded: bool = False) -> ImportReport:
    report = ImportReport()
    msgs = to_messages(_movielens_rows(src, report), graded=graded, report=report)
    write_log(dst, msgs)
    return report


def cmd_import(args: argparse.Namespace) -> int:
    report = import_movielens(args.src, args.out, graded=args.graded)
    for lineno, reason in report.bad[:20]:
        print(f"{args.src}:{lineno}: skipped: {reason}", file=sys.stderr)
    print(
        f"imported {report.events} events on {report.videos} videos from {report.rows} rows "
        f"({len(report.bad)} bad rows skipped) -> {args.out}",
        file=sys.stderr,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="turn an interaction log (MovieLens CSV) into an event log")
    p.add_argument("src", help="source file (.csv or .csv.gz)")
    p.add_argument("--out", "-o", required=True, help="event log to write (.jsonl or .jsonl.gz)")
    p.add_argument(
        "--graded",
        action="store_true",
        help="map ratings to event types (5 like, 4 complete, 3 watch, below play); "
        "default: every rating is a watch",
    )
    p.set_defaults(func=cmd_import)
