"""``vidrec forget``: erase a user (a ForgetUser), optionally waiting for the worker's receipt."""

from __future__ import annotations

import argparse
import sys

from streams.cli.options import reports_kafka_errors
from streams.wire.clients import forget
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    f = subparsers.add_parser(
        "forget",
        help="erase everything held about a user (sends a ForgetUser)",
        description="Send a ForgetUser for USER on the user-events topic, ordered after the "
        "user's earlier events; the worker that owns the user erases their state, their "
        "share of co-counts and popularity, and their last list, then publishes an "
        "ErasureReceipt on the erasures topic.",
    )
    f.add_argument("user")
    f.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds for the erasure receipt and print it (exit 3 without one)",
    )
    f.set_defaults(func=_cmd_forget)


@reports_kafka_errors("forget")
def _cmd_forget(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    sender, receipt = forget(kafka, topics, args.user, wait_s=args.wait)
    if sender.stats.failed:
        print(f"vidrec forget: not delivered: {sender.stats.errors[0]}", file=sys.stderr)
        return 2
    alias = (
        "" if sender.pseudonymiser is None else f" (as {sender.pseudonymiser.user_id(args.user)})"
    )
    print(f"vidrec forget: sent a ForgetUser for {args.user!r}{alias} to {topics.user_events}")
    if args.wait > 0:
        if receipt is None:
            print(
                f"vidrec forget: no receipt on {topics.erasures} within {args.wait:g} s "
                "(is a worker running?)",
                file=sys.stderr,
            )
            return 3
        print(receipt.to_json().decode())
    return 0
