"""``vidrec replay``: produce an event log to the topics, paced like the original or flat out."""

from __future__ import annotations

import argparse
import sys

from streams.cli.options import (
    Progress,
    add_log_argument,
    count_lines,
    limited,
    log_or_sample,
    reports_kafka_errors,
)
from streams.wire.clients import DEFAULT_SPEED, Pacer, make_sender, replay
from streams.wire.eventlog import read_log
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    r = subparsers.add_parser(
        "replay",
        help="produce an event log with its original pacing (scaled) or as fast as possible",
        description="Produce LOG to the topics in order. With --speed X, records leave with "
        "their stream-time spacing divided by X (the catalogue published before the first "
        "event is sent at once; gaps are capped by --max-gap); with --max, as fast as possible.",
    )
    add_log_argument(r)
    pace = r.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"stream seconds per wall second (default {DEFAULT_SPEED:g}: 15 minutes a second)",
    )
    pace.add_argument("--max", action="store_true", help="no pacing at all")
    r.add_argument("--max-gap", type=float, default=5.0, help="longest wait in wall seconds")
    r.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_replay)


@reports_kafka_errors("replay")
def _cmd_replay(args: argparse.Namespace) -> int:
    path = log_or_sample(args.log)
    kafka, topics = KafkaSettings(), Topics()
    sender = make_sender(topics, kafka)
    pacer = Pacer(None if args.max else args.speed, max_gap_s=args.max_gap)
    progress = Progress(None if args.quiet else count_lines(path, args.limit), "replay", args.quiet)
    pace = "as fast as possible" if args.max else f"at {args.speed:g}x"
    print(f"vidrec replay: {path} -> {topics.settings.prefix}.* {pace}", file=sys.stderr)
    try:
        stats = replay(limited(read_log(path), args.limit), sender, pacer, on_progress=progress)
    except KeyboardInterrupt:
        stats = sender.stats
        print("vidrec replay: interrupted", file=sys.stderr)
    finally:
        progress.close()
        sender.close()
    print(f"vidrec replay: {stats.summary()}", file=sys.stderr)
    return 2 if stats.failed else 0
