"""``vidrec sample``: write the synthetic sample (``streams.sample.generator``) as JSON lines."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from schemas import MessageBase
from streams.cli.options import positive_int
from streams.sample import default_sample_path
from streams.sample.generator import (
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_START,
    DEFAULT_USERS,
    DEFAULT_VIDEOS,
    generate,
    summarize,
    write_sample,
)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _utc_datetime(text: str) -> datetime:
    """ISO date or date-time; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date-time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _cmd_sample(args: argparse.Namespace) -> int:
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"vidrec sample: {line}", file=sys.stderr, flush=True)

    messages: Iterable[MessageBase] = generate(
        args.seed,
        args.videos,
        args.users,
        args.days,
        args.start,
        progress=None if args.quiet else say,
    )
    if args.stats:
        messages = list(messages)
    n = write_sample(args.out, messages)
    if not args.quiet:
        where = "stdout" if args.out == "-" else args.out
        say(f"wrote {n} lines to {where} in {time.monotonic() - began:.1f}s")
    if args.stats:
        print(json.dumps(summarize(messages), indent=2), file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    """Add ``vidrec sample``."""
    p = subparsers.add_parser(
        "sample",
        help="generate a synthetic catalogue and user event log (JSON lines)",
        description="Generate a realistic synthetic video catalogue and user event log as one "
        "time-ordered JSON-lines log (videos at their publication time, then events). The "
        f"defaults reproduce the shipped sample ({default_sample_path().name}).",
    )
    p.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED)
    p.add_argument("--videos", type=positive_int, default=DEFAULT_VIDEOS, help="catalogue size")
    p.add_argument("--users", type=_non_negative_int, default=DEFAULT_USERS)
    p.add_argument("--days", type=_positive_float, default=DEFAULT_DAYS, help="stream length")
    p.add_argument(
        "--start",
        type=_utc_datetime,
        default=DEFAULT_START,
        help="stream start, ISO 8601 (UTC unless an offset is given); default %(default)s",
    )
    p.add_argument(
        "--out", default="-", help="output file ('-' = stdout; a .gz suffix writes gzip)"
    )
    p.add_argument("--stats", action="store_true", help="print the log's statistics to stderr")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=_cmd_sample)
