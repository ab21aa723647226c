"""``vidrec subscribe``: print the published lists as they arrive, with their latency."""

from __future__ import annotations

import argparse
import json
import sys

from streams.cli.options import reports_kafka_errors
from streams.wire.clients import Received, latency_summary, subscribe
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics


def register(subparsers: argparse._SubParsersAction) -> None:
    s = subparsers.add_parser(
        "subscribe",
        help="tail the recommendations topic (pretty, or JSON lines)",
        description="Print each published Recommendations as it arrives, with its end-to-end "
        "latency (trigger event produced -> list received).",
    )
    s.add_argument("--user", help="only this user's lists")
    s.add_argument("--json", action="store_true", help="one JSON object a line (adds e2e_ms)")
    s.add_argument("--from-beginning", action="store_true", help="start at the oldest list")
    s.add_argument("--max", type=int, default=0, help="stop after this many lists")
    s.add_argument("--timeout", type=float, default=None, help="stop after S quiet seconds")
    s.add_argument("--top", type=int, default=5, help="items shown per list (pretty output)")
    s.add_argument("--stats", action="store_true", help="print latency percentiles at the end")
    s.set_defaults(func=_cmd_subscribe)


def format_recommendations(r: Received, top: int = 5) -> str:
    """A few lines for a human: who, after what, how fast, and the head of the list with
    each item's reason ("because you watched v3")."""
    recs = r.recs
    e2e = f"e2e {r.e2e_ms:.0f} ms" if r.e2e_ms is not None else "e2e ?"
    lines = [
        f"{recs.generated_at:%H:%M:%S}  user {recs.user_id}  after {recs.trigger_event_id}  "
        f"{e2e}, engine {recs.latency_ms:.1f} ms"
    ]
    for i, it in enumerate(recs.items[:top], start=1):
        src = it.sources
        why = f"   {it.reason.text()}" if it.reason is not None else ""
        lines.append(
            f"  {i:>2}. {it.video_id:<24} {it.score:8.4f}   cooc {src.cooc:.2f}  "
            f"content {src.content:.2f}  mf {src.mf:.2f}  popular {src.popular:.2f}{why}"
        )
    return "\n".join(lines)


@reports_kafka_errors("subscribe")
def _cmd_subscribe(args: argparse.Namespace) -> int:
    kafka, topics = KafkaSettings(), Topics()
    latencies: list[float] = []
    n = 0
    try:
        for r in subscribe(
            kafka,
            topics,
            user=args.user,
            from_beginning=args.from_beginning,
            timeout_s=args.timeout,
        ):
            n += 1
            if r.e2e_ms is not None and not args.from_beginning:
                latencies.append(r.e2e_ms)
            if args.json:
                out = json.loads(r.recs.to_json())
                out["e2e_ms"] = None if r.e2e_ms is None else round(r.e2e_ms, 1)
                print(json.dumps(out), flush=True)
            else:
                print(format_recommendations(r, args.top), flush=True)
            if args.max and n >= args.max:
                break
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"vidrec subscribe: {exc}", file=sys.stderr)
        return 1
    if args.stats or not args.json:
        print(
            f"vidrec subscribe: {n} lists; e2e latency {latency_summary(latencies)}",
            file=sys.stderr,
        )
    return 0
