"""``vidrec topics create|list``: make the topics on the broker, or print their layout."""

from __future__ import annotations

import argparse
import sys

from streams.cli.options import reports_kafka_errors
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, create_topics


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "topics",
        help="create or list vidrec's Kafka topics",
        description="Create every topic vidrec uses (idempotent: existing topics are left alone) "
        "or list their names, keys and cleanup policies. The prefix comes from "
        "VIDREC_TOPIC_PREFIX (default 'vidrec'), the broker from VIDREC_KAFKA_BOOTSTRAP_SERVERS.",
    )
    sub = p.add_subparsers(dest="topics_cmd", required=True)
    c = sub.add_parser("create", help="create the missing topics")
    c.add_argument("--prefix", help="topic prefix (default: VIDREC_TOPIC_PREFIX or 'vidrec')")
    c.add_argument("--partitions", type=int, help="partitions of the public topics")
    c.set_defaults(func=_cmd_create)
    ls = sub.add_parser("list", help="print the topic layout without touching the broker")
    ls.add_argument("--prefix", help="topic prefix")
    ls.set_defaults(func=_cmd_list)


@reports_kafka_errors("topics create")
def _cmd_create(args: argparse.Namespace) -> int:
    settings = TopicSettings()
    if args.prefix:
        settings = settings.model_copy(update={"prefix": args.prefix})
    if args.partitions:
        settings = settings.model_copy(update={"partitions": args.partitions})
    topics = Topics(settings)
    try:
        result = create_topics(KafkaSettings(), topics)
    except RuntimeError as exc:
        print(f"vidrec topics: {exc}", file=sys.stderr)
        return 1
    for spec in topics:
        print(
            f"{spec.name:<40} {result[spec.name]:<12} partitions={spec.partitions} "
            f"key={spec.key} cleanup={spec.cleanup_policy}"
        )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    settings = TopicSettings()
    if args.prefix:
        settings = settings.model_copy(update={"prefix": args.prefix})
    for spec in Topics(settings):
        kind = "internal" if spec.internal else "public"
        print(
            f"{spec.name:<40} {kind:<9} partitions={spec.partitions} key={spec.key} "
            f"cleanup={spec.cleanup_policy}"
        )
    return 0
