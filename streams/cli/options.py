"""What several commands share: the LOG and --settings options, progress bars, error lines.

``vidrec --help`` imports every command module, so their heavy imports (the engine, torch,
faust, qdrant, tqdm) wait inside the functions that need them.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from streams.sample import default_sample_path
from streams.wire.eventlog import BadLine, open_text
from streams.wire.settings import KafkaSettings
from workers.settings import SETTINGS_FILE_ENV, SettingsFileError, load_settings

SETTINGS_HELP = (
    f"settings file (from `vidrec tune`; default: ${SETTINGS_FILE_ENV}); flags and "
    "VIDREC_* variables override it"
)


def add_log_argument(
    parser: argparse.ArgumentParser,
    help: str = "event log (.gz ok); default: the shipped sample",
    *,
    option: bool = False,
) -> None:
    """An optional event log, the shipped sample when left out (see ``log_or_sample``): a
    positional ``log``, or with ``option`` a ``--log`` flag."""
    if option:
        parser.add_argument("--log", help=help)
    else:
        parser.add_argument("log", nargs="?", help=help)


def log_or_sample(log: str | None, *, must_exist: bool = False) -> str:
    """The log a command reads: the one given, else the shipped sample.

    With ``must_exist`` a missing file ends the command with one line, before any model loads.
    """
    if not log:
        return str(default_sample_path())
    if must_exist and log != "-" and not Path(log).exists():
        raise SystemExit(f"vidrec: no such event log: {log}")
    return log


def add_settings_argument(parser: argparse.ArgumentParser, help: str = SETTINGS_HELP) -> None:
    parser.add_argument("--settings", metavar="FILE", help=help)


def load_cli_settings(command: str, settings_file: str | None, **overrides: Any) -> Any:
    """``workers.settings.load_settings`` for a command: flags (``overrides``) > environment >
    settings file (``--settings`` or $VIDREC_SETTINGS_FILE) > defaults; a bad file or value
    ends the command with a one-line error naming the key."""
    try:
        return load_settings(settings_file, **overrides)
    except SettingsFileError as exc:
        raise SystemExit(f"vidrec {command}: {exc}") from None


def reports_kafka_errors(name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Turn a broker failure in a CLI command into one line and exit code 1, not a traceback."""

    def wrap(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> int:
            try:
                return fn(*args, **kwargs)
            except KafkaError as exc:
                servers = KafkaSettings().bootstrap_servers
                print(
                    f"vidrec {name}: Kafka at {servers} failed: {exc} "
                    "(is a broker running? 'vidrec kafka up' starts a local one)",
                    file=sys.stderr,
                )
                return 1

        return run

    return wrap


def report_bad(bad: BadLine, where: str = "", prefix: str = "vidrec") -> None:
    """One line on stderr for a log line that was skipped; the command goes on."""
    print(f"{prefix}: {where}line {bad.lineno}: skipped: {bad.reason}", file=sys.stderr)


def limited(items: Iterable[Any], limit: int) -> Iterator[Any]:
    """The first ``limit`` items (all of them for 0), as ``--limit`` means it."""
    for n, item in enumerate(items, start=1):
        if limit and n > limit:
            return
        yield item


def count_lines(path: str, limit: int) -> int | None:
    """A progress bar's total: the log's lines (up to ``limit``); unknown for stdin."""
    if path == "-":
        return None
    with open_text(path) as f:
        n = sum(1 for _ in f)
    return min(n, limit) if limit else n


class Progress:
    """A tqdm bar on stderr counting log lines (silent when quiet or not a terminal)."""

    def __init__(self, total: int | None, desc: str, quiet: bool) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit=" lines",
                file=sys.stderr,
                mininterval=0.5,
                smoothing=0.1,
            )
        self.last = 0

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n - self.last)
            self.last = n

    def close(self, n: int | None = None) -> None:
        if self.bar is not None:
            if n is not None:
                self(n)
            self.bar.close()


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
