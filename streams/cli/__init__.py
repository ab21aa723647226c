"""The ``vidrec`` command: one sub-command per job; each lives in the module that owns the job.

Every module in ``COMMAND_MODULES`` exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` (taking the parsed arguments, returning an exit code).
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
    "streams.cli.commands",
    "streams.imports.importer",
    "streams.imports.datasets",
    "streams.cli.finetune",
    "streams.cli.sample",
    "streams.cli.bench",
    "streams.wire.broker",
    "streams.wire.topics",
    "streams.wire.clients",
    "streams.wire.deadletters",
    "streams.worker.app",
    "streams.worker.up",
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


if __name__ == "__main__":
    sys.exit(main())
