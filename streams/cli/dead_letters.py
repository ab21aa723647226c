"""``vidrec dead-letters``: the records the workers rejected, and why.

Errors are a stream: a record that fails to decode or validate is never dropped silently; it is
written to ``<prefix>.dead-letters`` (keyed by its original key) so an operator can inspect it
here and re-ingest it once fixed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from schemas.wire import DeadLetter
from streams.cli.options import reports_kafka_errors
from streams.wire.clients import consume
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dead-letters",
        help="show records the workers rejected, with the reason",
        description="Read <prefix>.dead-letters: each rejected record's topic, partition, offset, "
        "reason and original bytes. Reads everything there is and stops, or follows with -f.",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new ones")
    p.add_argument("--from-beginning", action="store_true", help="with -f: start at the oldest")
    p.add_argument("--max", type=int, default=0, help="stop after this many")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds of silence that end it")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=_cmd_dead_letters)


@reports_kafka_errors("dead-letters")
def _cmd_dead_letters(args: argparse.Namespace) -> int:
    topics = Topics()
    n = 0
    for rec in consume(
        KafkaSettings(),
        topics.dead_letters,
        from_beginning=not args.follow or args.from_beginning,
        timeout_s=None if args.follow else args.timeout,
    ):
        try:
            dl = DeadLetter.from_json(rec.value)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"(unreadable dead letter at offset {rec.offset}: {exc})", file=sys.stderr)
            continue
        n += 1
        if args.json:
            out: dict[str, Any] = json.loads(rec.value)
            print(json.dumps(out), flush=True)
        else:
            print(
                f"{dl.time}  {dl.topic}[{dl.partition}]@{dl.offset}  {dl.reason}\n"
                f"    {dl.preview()}",
                flush=True,
            )
        if args.max and n >= args.max:
            break
    if not args.json:
        print(f"{n} dead letters", file=sys.stderr)
    return 0
