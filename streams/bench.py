"""``vidrec bench``: throughput figures printed as one table (a benchmark, never a test).

Every ratio is measured side by side in the same run; absolute figures depend on what else
the machine is doing, so the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the encoder and the embedded engine; print one table",
        description="Encoder titles/s (fp32, int8) and embedded engine events/s with a fresh "
        "top-k per event, on the shipped sample (or LOG).",
    )
    p.add_argument("--log", help="event log to replay (default: the shipped sample)")
    p.add_argument("--events", type=int, default=20000, help="log lines replayed (0 = all)")
    p.add_argument("--titles", type=int, default=1000, help="titles encoded per encoder run")
    p.add_argument("--markdown", help="also write the table as markdown here")
    p.set_defaults(func=cmd_bench)


def _titles(path: str, n: int) -> list[str]:
    from schemas import VideoPublished
    from streams.eventlog import read_log

    out: list[str] = []
    for msg in read_log(path):
        if isinstance(msg, VideoPublished):
            out.append(msg.text())
            if len(out) >= n:
                break
    return out


def bench_encoder(texts: list[str]) -> list[tuple[str, str, str]]:
    from workers.encoder import Encoder
    from workers.settings import EncoderSettings

    rows = []
    rates = {}
    for label, int8 in (("fp32", False), ("int8", True)):
        enc = Encoder(EncoderSettings(quantize_int8=int8))
        enc.encode_many(texts[:64])  # warm-up
        t0 = time.perf_counter()
        enc.encode_many(texts)
        rates[label] = len(texts) / (time.perf_counter() - t0)
        rows.append(
            (f"encoder {label} ({enc.device})", f"{rates[label]:.0f} titles/s",
             f"{len(texts)} titles, batch {enc.settings.batch_size}")
        )  # fmt: skip
    rows.append(("encoder int8 / fp32", f"x{rates['int8'] / rates['fp32']:.2f}", "same run"))
    return rows


def bench_engine(path: str, events: int) -> list[tuple[str, str, str]]:
    from streams.eventlog import read_log
    from workers.embedded import CachedEncoder, drive
    from workers.encoder import Encoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EngineSettings, IndexSettings

    msgs = [m for n, m in enumerate(read_log(path)) if not events or n < events]
    encoder = CachedEncoder(Encoder())
    with tempfile.TemporaryDirectory(prefix="vidrec-bench-") as tmp:
        # Embed first, so that the replay measures the engine, not the encoder.
        warm = Engine(EngineSettings(), encoder, None)
        drive([m for m in msgs if getattr(m, "kind", "") == "video"], warm)
        index = VideoIndex(IndexSettings(path=str(Path(tmp) / "q")), dim=encoder.dim)
        engine = Engine(EngineSettings(), encoder, index)
        stats = drive(msgs, engine)
        index.close()
    s = stats.summary()
    n_events = s["events"]
    video_s = stats.seconds  # includes upserts of the videos into the index
    k = engine.settings.k
    return [
        (
            f"embedded engine, fresh top-{k} per event",
            f"{n_events / video_s:.0f} events/s",
            f"{n_events} events, {s['videos']} videos, Qdrant "
            f"{getattr(index.settings, 'backend', 'local')}",
        ),
        ("per-event latency p50 / p99", f"{s['latency_p50_ms']} / {s['latency_p99_ms']} ms", ""),
    ]


def format_rows(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| benchmark | figure | setting |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.sample import default_sample_path

    path = args.log or str(default_sample_path())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"vidrec bench on {path} (load average {load:.2f}, {os.cpu_count()} cpus)",
          file=sys.stderr)  # fmt: skip
    rows: list[tuple[str, str, str]] = []
    rows += bench_encoder(_titles(path, args.titles))
    rows += bench_engine(path, args.events)
    table = format_rows(rows)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0
