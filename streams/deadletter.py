"""Dead letters: a rejected record's original bytes, where it came from, and why it was rejected.

Errors are a stream: a record that fails to decode or validate is never dropped silently; it is
written to ``<prefix>.dead-letters`` (keyed by its original key) so an operator can inspect it
with ``vidrec dead-letters`` and re-ingest it once fixed.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

KIND = "dead-letter"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One rejected record; ``value``/``key`` are the original bytes (base64 on the wire)."""

    topic: str
    partition: int
    offset: int
    reason: str
    value: bytes | None
    key: bytes | None = None
    stage: str = ""
    time: str = ""

    def to_json(self) -> bytes:
        d = asdict(self)
        d["value_b64"] = _b64(d.pop("value"))
        d["key_b64"] = _b64(d.pop("key"))
        d["kind"] = KIND
        d["time"] = self.time or datetime.now(UTC).isoformat()
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        d = json.loads(raw)
        if d.get("kind") != KIND:
            raise ValueError(f"not a dead letter: kind={d.get('kind')!r}")
        return cls(
            topic=d["topic"],
            partition=int(d["partition"]),
            offset=int(d["offset"]),
            reason=d["reason"],
            value=_unb64(d.get("value_b64")),
            key=_unb64(d.get("key_b64")),
            stage=d.get("stage", ""),
            time=d.get("time", ""),
        )

    def preview(self, width: int = 120) -> str:
        """The original value as text, shortened, for a human reading the dead-letter topic."""
        if self.value is None:
            return "(no value)"
        text = self.value.decode("utf-8", errors="replace")
        return text if len(text) <= width else text[: width - 3] + "..."


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode("ascii")


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from streams.clients import reports_kafka_errors

    return reports_kafka_errors("dead-letters")(_dead_letters)(args)


def _dead_letters(args: argparse.Namespace) -> int:
    from streams.clients import consume
    from streams.settings import KafkaSettings
    from streams.topics import Topics

    topics = Topics()
    n = 0
    for rec in consume(
        KafkaSettings(),
        topics.dead_letters,
        from_beginning=not args.follow or args.from_beginning,
        timeout_s=None if args.follow else args.timeout,
    ):
        try:
            dl = DeadLetter.from_json(rec.value)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"(unreadable dead letter at offset {rec.offset}: {exc})", file=sys.stderr)
            continue
        n += 1
        if args.json:
            out: dict[str, Any] = json.loads(rec.value)
            print(json.dumps(out), flush=True)
        else:
            print(
                f"{dl.time}  {dl.topic}[{dl.partition}]@{dl.offset}  {dl.reason}\n"
                f"    {dl.preview()}",
                flush=True,
            )
        if args.max and n >= args.max:
            break
    if not args.json:
        print(f"{n} dead letters", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vidrec dead-letters``."""
    p = subparsers.add_parser(
        "dead-letters",
        help="show records the workers rejected, with the reason",
        description="Read <prefix>.dead-letters: each rejected record's topic, partition, offset, "
        "reason and original bytes. Reads everything there is and stops, or follows with -f.",
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new ones")
    p.add_argument("--from-beginning", action="store_true", help="with -f: start at the oldest")
    p.add_argument("--max", type=int, default=0, help="stop after this many")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds of silence that end it")
    p.add_argument("--json", action="store_true", help="one JSON object a line")
    p.set_defaults(func=_cmd_dead_letters)
