"""``vidrec evaluate``: score published recommendations against their log, or replay baselines.

``evaluate_files`` and ``run_systems`` are also what the tests score runs with.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from schemas import Recommendations, UserEvent, VideoPublished
from streams.cli.options import (
    Progress,
    add_log_argument,
    add_settings_argument,
    count_lines,
    limited,
    load_cli_settings,
    log_or_sample,
)
from streams.wire.eventlog import read_log
from workers.settings import EngineSettings, IndexSettings


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "evaluate",
        help="next-event evaluation of published recommendations, or of baselines",
        description="Score RECS (from `vidrec run --out`) against LOG with the prequential "
        "next-event protocol; with --baselines, replay LOG through the hybrid engine and each "
        "baseline in the same loop and print one table.",
    )
    add_log_argument(e, "event log; default: the shipped sample")
    e.add_argument("recs", nargs="?", help="recommendations file from `vidrec run --out`")
    e.add_argument("--baselines", action="store_true", help="run the hybrid and every baseline")
    e.add_argument(
        "--only",
        help="comma-separated subset of systems for --baselines; 'hybrid-no-creator', "
        "'hybrid-no-language', 'hybrid-no-duration', 'hybrid-no-format', 'hybrid-no-visual' "
        "and 'hybrid-no-metadata' are the hybrid without those features (an ablation)",
    )
    e.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    e.add_argument("--json", action="store_true", help="print results as JSON")
    e.add_argument("--markdown", help="also write the table as markdown to this file")
    e.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw HR@10 per tenth of the stream (dated by its last event) for each system, "
        "the halves marked (needs matplotlib)",
    )
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings_argument(e)
    e.set_defaults(func=cmd_evaluate)


def _fmt(x: float) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def cmd_evaluate(args: argparse.Namespace) -> int:
    path = log_or_sample(args.log, must_exist=True)
    if args.plot:
        # before a replay that may take minutes, not after it
        from streams.cli.plots import PlotError, require_matplotlib

        try:
            require_matplotlib("evaluate --plot")
        except PlotError as exc:
            raise SystemExit(str(exc)) from None
    if args.baselines:
        return _evaluate_baselines(path, args)
    if not args.recs:
        raise SystemExit("vidrec evaluate: give RECS (from `vidrec run --out`) or --baselines")
    report = evaluate_files(path, args.recs, args.limit)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            if k != "segments":  # the plot's data: in --json, too long for a line
                print(f"{k:<24}{_fmt(v)}")
    _plot(args, path, {Path(args.recs).name: report})
    return 0


def _plot(args: argparse.Namespace, path: str, results: dict[str, dict[str, Any]]) -> None:
    if args.plot:
        from streams.cli.plots import plot_segments

        plot_segments(results, args.plot, path)
        # stdout stays one JSON document under --json
        print(f"plot: {args.plot}", file=sys.stderr if args.json else sys.stdout)


def evaluate_files(log: str, recs: str, limit: int = 0) -> dict[str, Any]:
    """Score a recommendations file against its log: the list triggered by each event is the one
    shown before the user's next event.

    A trigger with several lists (a worker that crashed after publishing and published again
    for the redelivered event) counts with its first list in the file, which is the one the
    user saw first; the later ones are ignored.
    """
    # The engine's modules load torch and qdrant: imported here, not for `vidrec --help`.
    from workers.evaluation import Evaluator

    ev = Evaluator()
    rec_iter = iter(read_log(recs))
    pending: dict[str, Recommendations] = {}
    used: set[str] = set()

    def recs_for(event_id: str) -> Recommendations | None:
        if event_id in used:
            return None
        used.add(event_id)
        if event_id in pending:
            return pending.pop(event_id)
        for r in rec_iter:
            if isinstance(r, Recommendations):
                t = r.trigger_event_id
                if t == event_id:
                    return r
                if t and t not in used:
                    pending.setdefault(t, r)
        return None

    for msg in limited(read_log(log), limit):
        if isinstance(msg, VideoPublished):
            ev.on_video(msg)
        elif isinstance(msg, UserEvent):
            ev.on_event(msg)
            r = recs_for(msg.event_id)
            if r is not None:
                ev.on_recommendations(r)
    return {**ev.report(), "segments": ev.segments()}


SYSTEMS = (
    "hybrid",
    "item-knn",
    "online-mf",
    "popularity",
    "engine popularity",
    "recent popularity",
    "engine co-occurrence",
    "engine factors",
    "content",
    "sequential only",
)


def run_systems(
    path: str,
    systems: tuple[str, ...] = SYSTEMS,
    limit: int = 0,
    quiet: bool = True,
    encoder: Any = None,
    settings: Any = None,
    thumbnails: Any = None,
) -> dict[str, dict[str, Any]]:
    """Replay ``path`` through each system in the same loop; metrics by system name.

    The encoder is loaded only when a system needs it (not for the independent baselines).
    ``thumbnails``: a ``ThumbnailReader`` shared by the replays (each thumbnail read once).
    """
    from workers.encoder import HashingEncoder
    from workers.evaluation import Evaluator
    from workers.index import VideoIndex
    from workers.inprocess import INDEPENDENT, CachedEncoder, drive, make_engine

    if encoder is None:
        if all(s in INDEPENDENT for s in systems):
            encoder = HashingEncoder()  # never called: the baselines take no encoder
        else:
            from workers.encoder import load_encoder

            encoder = load_encoder()
    settings = settings or EngineSettings()
    cached = CachedEncoder(encoder)
    total = count_lines(path, limit)
    results: dict[str, dict[str, Any]] = {}
    for name in systems:
        indexes: list[Any] = []

        def index_factory(indexes: list[Any] = indexes) -> Any:
            idx = VideoIndex(IndexSettings(path=None), dim=cached.dim)
            indexes.append(idx)
            return idx

        engine = make_engine(name, settings, cached, index_factory)
        ev = Evaluator(fresh_days=settings.fresh_days)
        progress = Progress(total, f"{name:>17}", quiet)
        t0 = time.perf_counter()
        try:
            stats = drive(
                limited(read_log(path), limit),
                engine,
                evaluator=ev,
                on_progress=progress,
                thumbnails=thumbnails,
            )
        finally:
            progress.close()
            for idx in indexes:
                idx.close()
        res = ev.report()
        res["segments"] = ev.segments()
        res["events_per_s"] = stats.summary()["events_per_s"]
        res["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = res
    return results


TABLE_COLUMNS = (
    ("HR@10", "hr@10"),
    ("NDCG@10", "ndcg@10"),
    ("2nd half HR@10", "h2_hr@10"),
    ("2nd half NDCG@10", "h2_ndcg@10"),
    ("last 20% HR@10", "last20_hr@10"),
    ("last 20% NDCG@10", "last20_ndcg@10"),
    ("new-video HR@10", "new_hr@10"),
    ("brand-new HR@10", "brand_new_hr@10"),
    ("HR@20", "hr@20"),
    ("cov@10", "coverage@10"),
)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    head = "| system | " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(TABLE_COLUMNS)
    rows = [head, sep]
    for name, r in results.items():
        rows.append(f"| {name} | " + " | ".join(f"{r[k]:.4f}" for _, k in TABLE_COLUMNS) + " |")
    any_r = next(iter(results.values()))
    rows.append(
        f"\nevents scored: {any_r['events']} (second half {any_r['h2_events']}, "
        f"last 20% {any_r['last20_events']}, new-video {any_r['new_events']}, "
        f"brand-new {any_r['brand_new_events']}); halves by user-event position in the log; "
        "--json has every metric and the HR@10 curve per tenth of the stream"
    )
    return "\n".join(rows)


def _evaluate_baselines(path: str, args: argparse.Namespace) -> int:
    systems = tuple(s.strip() for s in args.only.split(",")) if args.only else SYSTEMS
    from workers.inprocess import ABLATIONS

    unknown = [s for s in systems if s not in SYSTEMS and s not in ABLATIONS]
    if unknown:
        raise SystemExit(
            f"vidrec evaluate: unknown systems {unknown}; choose from {SYSTEMS} or the "
            f"hybrid without features: {tuple(ABLATIONS)}"
        )
    from workers.encoder import load_encoder
    from workers.thumbnails import ThumbnailReader

    loaded = load_cli_settings("evaluate", args.settings)
    results = run_systems(
        path,
        systems,
        args.limit,
        quiet=args.quiet,
        encoder=load_encoder(loaded.encoder),
        settings=loaded.engine,
        thumbnails=ThumbnailReader(loaded.thumbnails) if loaded.thumbnails.enabled else None,
    )
    table = format_table(results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    _plot(args, path, results)
    return 0
