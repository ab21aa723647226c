"""``vidrec soak``: run worker(s) at a fixed rate for a while (``streams.bench.soak``); report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid

from streams.bench.soak import format_report, soak
from streams.cli.options import add_log_argument, log_or_sample, reports_kafka_errors
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, delete_prefix


@reports_kafka_errors("soak")
def _cmd_soak(args: argparse.Namespace) -> int:

    kafka = KafkaSettings()
    use_running = args.workers == 0
    prefix = args.prefix or os.environ.get("VIDREC_TOPIC_PREFIX")
    if use_running and not prefix:
        print("vidrec soak: --workers 0 needs --prefix of the running workers", file=sys.stderr)
        return 2
    fresh = prefix is None
    prefix = prefix or f"vidrec-soak-{uuid.uuid4().hex[:6]}"
    topics = Topics(TopicSettings().model_copy(update={"prefix": prefix}))
    seconds = args.seconds if args.seconds is not None else args.minutes * 60.0
    echo = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        report = soak(
            kafka,
            topics,
            seconds=seconds,
            rate=args.rate,
            log_path=log_or_sample(args.log),
            workers=args.workers,
            bad_every=args.bad_every,
            sample_every_s=args.sample_every,
            drain_s=args.drain,
            echo=echo,
        )
    finally:
        if fresh and not args.keep_topics:
            delete_prefix(kafka, prefix)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vidrec soak``."""
    p = subparsers.add_parser(
        "soak",
        help="run worker(s) at a fixed event rate for a while; report memory, lag and losses",
        description="Start worker process(es) on fresh topics (deleted at the end), replay an "
        "event log at --rate user events per second for --minutes (the log is cycled with fresh "
        "event ids), slip in a bad record every --bad-every events, and sample worker RSS and "
        "consumer lag. Exit code 0 when nothing was lost: every event got a list and every bad "
        "record a dead letter. Needs a running broker (VIDREC_KAFKA_BOOTSTRAP_SERVERS).",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long to produce (default 10)")
    p.add_argument("--seconds", type=float, help="how long to produce, in seconds (overrides)")
    p.add_argument("--rate", type=float, default=100.0, help="user events per second")
    add_log_argument(p, "event log to replay (default: the shipped sample)", option=True)
    p.add_argument(
        "--workers", type=int, default=1, help="workers to start (0: use running ones, --prefix)"
    )
    p.add_argument("--prefix", help="topic prefix (default: a fresh vidrec-soak-XXXXXX)")
    p.add_argument("--keep-topics", action="store_true", help="keep a fresh prefix's topics")
    p.add_argument("--bad-every", type=int, default=5000, help="a bad record every N events")
    p.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--drain", type=float, default=120.0, help="most seconds to wait for lists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_soak)
