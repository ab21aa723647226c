"""``vidrec bench``: run the benchmark sections (``streams.bench``) and print one table.

It is a benchmark, never a test: figures depend on what else the machine runs, so the load
average is printed with them, and every ratio is measured side by side in the same run.
The table goes to stdout and, with a PNG plot, to ``--out``. ``--quick`` is the tiny setting
the tests run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.bench.encoder import bench_encoder, sample_titles
from streams.bench.engine import bench_engine
from streams.bench.kafka_io import StreamSettings, broker_answers
from streams.bench.memory import memory_in_child
from streams.bench.report import Report, Row, format_rows, load_average, write_plot
from streams.bench.sample import bench_sample
from streams.bench.streaming import bench_streaming
from streams.cli.options import add_log_argument, log_or_sample

SECTIONS = (
    "encoder",
    "sample",
    "engine",
    "index",
    "streaming",
    "freshness",
    "memory",
    "serve",
    "visual",
)


# Settings of the full suite and of --quick (the tests' tiny run); a flag given wins over both.
FULL: dict[str, Any] = {
    "titles": 1000,
    "events": 20000,
    "sample_encoder": "minilm",
    "sizes": "1000,10000,100000,1000000",
    "engine_events": 3000,
    "engine_warmup": 2000,
    "engine_seconds": 30.0,
    "stream_events": 6000,
    "stream_videos": 1500,
    "stream_users": 1000,
    "fresh_seconds": 15.0,
    "video_seconds": 15.0,
    "stream_encoder": "minilm",
    "ann_sizes": "10000,100000",
    "ann_encoder": "minilm",
    "memory_events": 1_000_000,
    "memory_videos": 10_000,
    "memory_users": 50_000,
    "memory_active": 5_000,
    "memory_days": 180.0,
    "memory_rank_every": 100,
    "serve_users": 10_000,
    "serve_videos": 10_000,
    "serve_rate": 1000.0,
    "serve_seconds": 10.0,
    "visual_images": 200,
}


QUICK: dict[str, Any] = {
    **FULL,
    "titles": 64,
    "events": 1500,
    "sample_encoder": "hashing",
    "sizes": "1000",
    "engine_events": 200,
    "engine_warmup": 200,
    "engine_seconds": 10.0,
    "stream_events": 300,
    "stream_videos": 100,
    "stream_users": 50,
    "fresh_seconds": 2.0,
    "video_seconds": 2.0,
    "stream_encoder": "hashing",
    "ann_sizes": "1000",
    "ann_encoder": "hashing",
    "memory_events": 20_000,
    "memory_videos": 1000,
    "memory_users": 2000,
    "memory_active": 500,
    "memory_days": 30.0,
    "memory_rank_every": 50,
    "serve_users": 500,
    "serve_videos": 500,
    "serve_rate": 200.0,
    "serve_seconds": 2.0,
    "visual_images": 10,
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run the benchmark suite; print one table (markdown + PNG in --out)",
        description="Benchmarks of the encoder, the embedded engine (shipped sample and synthetic "
        "catalogues), streaming throughput and freshness on the broker (VIDREC_KAFKA_*), and "
        "memory. Every figure comes with its setting and its target; ratios are measured side "
        "by side in the same run. The full suite takes about 20-30 minutes on 2 cores: pick "
        "sections with --only, e.g. --only engine,memory --sizes 1000,10000. Unset flags take "
        "the full suite's values, or --quick's.",
    )
    p.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all): {','.join(SECTIONS)}",
    )
    p.add_argument("--quick", action="store_true", help="tiny settings (what the tests run)")
    p.add_argument("--out", default=".vidrec/bench", help="folder for bench.md and bench.png")
    p.add_argument("--markdown", help="also write the table as markdown here")

    def opt(g: Any, flag: str, kind: type, text: str, **kw: Any) -> None:
        key = flag.lstrip("-").replace("-", "_")
        g.add_argument(flag, type=kind, default=None, help=f"{text} (full {FULL[key]}, "
                       f"quick {QUICK[key]})", **kw)  # fmt: skip

    g = p.add_argument_group("encoder and sample")
    add_log_argument(
        g, "event log of the sample section (default: the shipped sample)", option=True
    )
    opt(g, "--events", int, "sample log lines replayed (0 = all)")
    opt(g, "--titles", int, "titles encoded per encoder run")
    opt(g, "--sample-encoder", str, "encoder of the sample replay", choices=("minilm", "hashing"))
    g = p.add_argument_group("engine")
    opt(g, "--sizes", str, "comma-separated catalogue sizes")
    opt(g, "--engine-events", int, "events timed per size")
    opt(g, "--engine-warmup", int, "events learned (not ranked) before the timed ones")
    opt(g, "--engine-seconds", float, "time cap of the timed events per size")
    g = p.add_argument_group("index (HNSW recall@50 against exact search, on the log's videos)")
    opt(g, "--ann-sizes", str, "comma-separated index sizes (the log's videos, grown)")
    opt(g, "--ann-encoder", str, "encoder of the videos' vectors", choices=("minilm", "hashing"))
    g = p.add_argument_group("streaming and freshness")
    opt(g, "--stream-events", int, "events of each backlog run")
    opt(g, "--stream-videos", int, "catalogue embedded by the worker first")
    opt(g, "--stream-users", int, "users of the streamed events")
    g.add_argument("--rate", type=float, default=500.0, help="steady events/s of the e2e run")
    opt(g, "--fresh-seconds", float, "length of the e2e run")
    g.add_argument("--video-rate", type=float, default=50.0, help="videos/s of the video run")
    opt(g, "--video-seconds", float, "length of the video run")
    opt(
        g, "--stream-encoder", str, "encoder of the embedding worker", choices=("minilm", "hashing")
    )
    g = p.add_argument_group("memory")
    opt(g, "--memory-events", int, "events replayed")
    opt(g, "--memory-videos", int, "catalogue size")
    opt(g, "--memory-users", int, "distinct users in all")
    opt(g, "--memory-active", int, "users active at a time")
    opt(g, "--memory-days", float, "stream time of the replay, days")
    opt(g, "--memory-rank-every", int, "rank one event in N (all are learned)")
    g = p.add_argument_group("serve (vidrec serve on loopback, topics on the broker)")
    opt(g, "--serve-users", int, "users with a list in the store")
    opt(g, "--serve-videos", int, "videos with metadata and vectors")
    opt(g, "--serve-rate", float, "requests/s of the open-loop load")
    opt(g, "--serve-seconds", float, "length of each load run (and of the new-list run)")
    g = p.add_argument_group("visual (the thumbnail descriptor, issue 16)")
    opt(g, "--visual-images", int, "generated JPEGs per thumbnail size")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        print(f"vidrec bench: unknown sections {unknown}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    path = log_or_sample(args.log)
    load_before = load_average()
    print(f"vidrec bench: {', '.join(only)} ({load_before})", file=sys.stderr, flush=True)
    report = Report()
    t_all = time.perf_counter()
    if "encoder" in only:
        report.add(*bench_encoder(sample_titles(path, args.titles)))
    if "sample" in only:
        report.add(*bench_sample(path, args.events, args.sample_encoder))
    if "engine" in only:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
        rows, rates = bench_engine(
            sizes, args.engine_events, args.engine_warmup, args.engine_seconds
        )
        report.engine_rates.update(rates)
        report.add(*rows)
    if "index" in only:
        from streams.bench.index import ann_rows

        sizes = [int(x) for x in args.ann_sizes.split(",") if x.strip()]
        report.add(*ann_rows(path, sizes, args.ann_encoder, args.out or ".vidrec/bench"))
    if "streaming" in only or "freshness" in only:
        why = broker_answers()
        if why is not None:
            report.add(Row("streaming", "streaming and freshness", "skipped", why))
        else:
            s = StreamSettings(
                args.stream_events,
                args.stream_videos,
                args.stream_users,
                args.rate,
                args.fresh_seconds,
                args.video_rate,
                args.video_seconds,
                args.stream_encoder,
            )
            report.add(*bench_streaming(s, "streaming" in only, "freshness" in only, report))
    if "memory" in only:
        rows, series = memory_in_child(
            {
                "n_events": args.memory_events,
                "n_videos": args.memory_videos,
                "n_users": args.memory_users,
                "active": args.memory_active,
                "days": args.memory_days,
                "rank_every": args.memory_rank_every,
            }
        )
        report.rss = series
        report.add(*rows)
    if "serve" in only:
        why = broker_answers()
        if why is not None:
            report.add(Row("serve", "serve", "skipped", why))
        else:
            from streams.bench.serve import ServeBench, bench_serve

            b = ServeBench(args.serve_users, args.serve_videos, args.serve_rate,
                           args.serve_seconds, list_seconds=args.serve_seconds)  # fmt: skip
            report.add(*bench_serve(b))
    if "visual" in only:
        from streams.bench.visual import bench_visual

        report.add(*bench_visual(args.visual_images))
    load_after = load_average()
    table = format_rows(report.rows)
    print(table)
    print(f"before: {load_before}; after: {load_after}; {time.perf_counter() - t_all:.0f} s")
    header = (
        f"# vidrec bench\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, sections {', '.join(only)}"
        f"{' (quick)' if args.quick else ''}; before: {load_before}; after: {load_after}.\n\n"
    )
    md = header + table + "\n"
    if report.rss:
        md += "\nRSS over the replay (events, MiB): " + ", ".join(
            f"{e:,}: {m:,.0f}" for e, m in report.rss
        )
        md += "\n"
    if args.markdown:
        Path(args.markdown).write_text(md, encoding="utf-8")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(md, encoding="utf-8")
        why = write_plot(report, out / "bench.png")
        if why:
            print(f"vidrec bench: {why}", file=sys.stderr)
        print(f"vidrec bench: wrote {out / 'bench.md'}" + ("" if why else " and bench.png"),
              file=sys.stderr)  # fmt: skip
    return 0
