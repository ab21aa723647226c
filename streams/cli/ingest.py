"""``vidrec ingest``: send a JSON-lines file of inputs to their topics."""

from __future__ import annotations

import argparse
import sys

from streams.cli.options import report_bad, reports_kafka_errors
from streams.wire.clients import ingest, make_sender
from streams.wire.eventlog import open_text, read_lines
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="send JSON-lines messages (videos, user events, forgets) to their topics",
        description="Validate each JSON line and send it to its topic with its key (videos by "
        "video_id, user events and forgets by user_id). A bad line is reported with its line "
        "number and skipped; exit code 1 when any line was skipped, 2 when delivery failed.",
    )
    p.add_argument("file", nargs="?", default="-", help="JSON-lines file (.gz ok); '-' = stdin")
    p.set_defaults(func=_cmd_ingest)


@reports_kafka_errors("ingest")
def _cmd_ingest(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    sender = make_sender(topics, kafka)
    f = open_text(args.file)
    where = "" if args.file == "-" else f"{args.file}: "
    try:
        stats = ingest(read_lines(f), sender, on_bad=lambda b: report_bad(b, where))
    finally:
        if f is not sys.stdin:
            f.close()
        sender.close()
    print(f"vidrec ingest: {stats.summary()}", file=sys.stderr)
    if stats.failed:
        return 2
    return 1 if stats.bad_lines else 0
