"""JSON-lines event logs: one message per line, each with its ``kind``; ``.gz`` is handled.

The reader never stops on a bad line: it yields a ``BadLine`` (line number, reason, raw text) in
its place, so the caller reports it, dead-letters it, and carries on with the good lines.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from schemas import DecodeError, MessageBase, decode


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that could not be decoded; ``lineno`` counts from 1."""

    lineno: int
    reason: str
    raw: str


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Open a log for text I/O; ``-`` is stdin/stdout and a ``.gz`` suffix means gzip.

    Reading keeps bytes that are not UTF-8 as lone surrogates instead of raising, so that one
    corrupt line becomes one ``BadLine`` rather than the end of the whole log.
    """
    if str(path) == "-":
        return sys.stdin if "r" in mode else sys.stdout
    path = Path(path)
    errors = "surrogateescape" if "r" in mode else "strict"
    if path.suffix == ".gz":
        raw = gzip.open(path, mode.replace("t", "") + "b")
        return io.TextIOWrapper(raw, encoding="utf-8", errors=errors)
    return open(path, mode, encoding="utf-8", errors=errors)


def read_lines(lines: Iterable[str]) -> Iterator[MessageBase | BadLine]:
    """Decode lines into messages, yielding a ``BadLine`` for each one that fails."""
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raw = text[:10_000].encode(errors="backslashreplace").decode()
            yield BadLine(lineno, f"not valid UTF-8 (column {exc.start + 1})", raw)
            continue
        try:
            yield decode(text)
        except DecodeError as exc:
            yield BadLine(lineno, exc.reason, text[:10_000])


def read_log(path: str | Path) -> Iterator[MessageBase | BadLine]:
    """Messages of a log file in file order (``-`` reads stdin)."""
    f = open_text(path)
    try:
        yield from read_lines(f)
    finally:
        if f is not sys.stdin:
            f.close()


def write_log(path: str | Path, messages: Iterable[MessageBase]) -> int:
    """Write messages as JSON lines; returns how many were written."""
    n = 0
    f = open_text(path, "w")
    try:
        for msg in messages:
            f.write(msg.to_json().decode())
            f.write("\n")
            n += 1
    finally:
        if f is not sys.stdout:
            f.close()
    return n


class LogWriter:
    """Append messages to a log one at a time (for ``vidrec run --out``)."""

    def __init__(self, path: str | Path) -> None:
        self._f = open_text(path, "w")

    def write(self, msg: MessageBase) -> None:
        self._f.write(msg.to_json().decode())
        self._f.write("\n")

    def close(self) -> None:
        if self._f is not sys.stdout:
            self._f.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
