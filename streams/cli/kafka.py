"""``vidrec kafka up|down|status|wait``: the local single-node broker."""

from __future__ import annotations

import argparse
import sys

from streams.wire.broker import ACTIONS, run_script


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "kafka",
        help="start/stop the local single-node Kafka broker (no Docker needed)",
        description="Run Apache Kafka (KRaft, one node) on 127.0.0.1 from Maven Central jars. "
        "'up' fetches the jars on first use (needs Java 17+ and Maven), formats the storage once, "
        "starts the broker and waits until it answers; 'status' exits 0 when it runs. "
        "Data, config and logs live in infra/kafka/run (VIDREC_KAFKA_DIR).",
    )
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="client port on 127.0.0.1 (default: VIDREC_KAFKA_PORT or 9092)",
    )
    p.set_defaults(func=_cmd_kafka)


def _cmd_kafka(args: argparse.Namespace) -> int:
    try:
        return run_script(args.action, port=args.port)
    except FileNotFoundError as exc:
        print(f"vidrec kafka: {exc}", file=sys.stderr)
        return 2
