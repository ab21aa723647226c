"""Turn interaction logs people already have into a vidrec event log (for ``vidrec import``).

A log of ratings or plays says who touched what and when; vidrec also needs each video's
publication, in stream order, so that a video is recommendable from the moment it exists and not
before. For movie data a film is "published" at the later of the stream's first event and
1 January of its year: nobody can have watched it before it came out, and films older than the
stream were all on the shelf when it began. An explicit publication time (an items file's
column) wins over that rule.

Reading files and checking values is ``streams.imports.rows``; this module builds the messages.
"""

from __future__ import annotations

import hashlib
import heapq
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
    is_parquet,
    movielens_layout,
    parquet_rows,
    rating_type,
    read_header,
    read_interactions,
    read_items,
)
from streams.wire.eventlog import write_log

__all__ = ["RATING_TYPES", "ImportReport", "import_file", "import_movielens", "rating_type"]


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
            if item in self.inline:  # metadata the items file lacks, from the log's columns
                info = info.with_meta_from(self.inline[item][2])
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
        duration_s=info.duration,
        width=info.width,
        height=info.height,
        language=info.language,
        creator_id=info.creator,
        thumbnail_url=info.thumbnail,
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
