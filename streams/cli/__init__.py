"""The ``vidrec`` command: one module of this package per sub-command (or group of them).

Every module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` (taking the parsed arguments, returning an exit code); the
options several commands share are in ``streams.cli.options``. The library modules the
commands drive know nothing of argparse or of the terminal.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Sensible defaults before torch or transformers are imported anywhere.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COMMAND_MODULES = [
    "streams.cli.run",
    "streams.cli.evaluate",
    "streams.cli.schemas",
    "streams.cli.import_",
    "streams.cli.data",
    "streams.cli.finetune",
    "streams.cli.sample",
    "streams.cli.bench",
    "streams.cli.kafka",
    "streams.cli.topics",
    "streams.cli.ingest",
    "streams.cli.replay",
    "streams.cli.subscribe",
    "streams.cli.forget",
    "streams.cli.dead_letters",
    "streams.cli.worker",
    "streams.cli.serve",
    "streams.cli.up",
    "streams.cli.soak",
    "streams.cli.tune",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidrec",
        description="Event-driven streaming recommender for video platforms.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
