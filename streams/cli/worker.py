"""``vidrec worker``: one streaming worker (faust) in this process, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.options import add_settings_argument, load_cli_settings, reports_kafka_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a streaming worker (faust) on the Kafka topics",
        description="Join the worker group of VIDREC_TOPIC_PREFIX: embed new videos, learn from "
        "user events and publish each user's fresh list. Start more workers to share the "
        "partitions. Configured by VIDREC_KAFKA_*, VIDREC_TOPIC_*, VIDREC_WORKER_*, "
        "VIDREC_ENCODER_* (VIDREC_ENCODER_MODEL_PATH=hashing: no transformer), VIDREC_QDRANT_* "
        "and VIDREC_ENGINE_*. Stop with Ctrl-C or SIGTERM.",
    )
    p.add_argument("--loglevel", help="faust/vidrec log level (default: warning)")
    p.add_argument(
        "--web-port", type=int, help="faust web server port, serving /metrics (default: off)"
    )
    p.add_argument(
        "--role",
        choices=("all", "embed", "events"),
        help="embed: only turn videos into video-vectors (its own process and group); events: "
        "only learn and recommend; all (default, $VIDREC_WORKER_ROLE): both",
    )
    add_settings_argument(
        p,
        "settings file of the engine, encoder and index (from `vidrec tune`; default: "
        "$VIDREC_SETTINGS_FILE); VIDREC_* variables override it",
    )
    p.set_defaults(func=_cmd_worker)


@reports_kafka_errors("worker")
def _cmd_worker(args: argparse.Namespace) -> int:
    # imported here, not at the top: faust, torch and Qdrant load only when a worker starts
    from streams.worker.app import WorkerSettings, make_app, run

    updates: dict[str, Any] = {}
    if args.loglevel:
        updates["loglevel"] = args.loglevel
    if args.web_port is not None:
        updates["web_port"] = args.web_port
    if args.role:
        updates["role"] = args.role

    loaded = load_cli_settings("worker", args.settings)
    settings = WorkerSettings().model_copy(update=updates)
    return run(make_app(settings, settings=loaded))
