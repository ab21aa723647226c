"""``vidrec run``: replay an event log through the engine in-process, then summarise it."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from typing import Any

from streams.cli.options import (
    Progress,
    add_log_argument,
    add_settings_argument,
    count_lines,
    limited,
    load_cli_settings,
    log_or_sample,
    positive_int,
    report_bad,
)
from streams.wire.eventlog import LogWriter, read_log

# Events per micro-batch of `vidrec run`. One by default: the same protocol as `vidrec evaluate`.
# On the shipped sample (3,000 videos, interleaved with the events, which end a batch) batches of
# 32 ran no faster (176 against 179 s); from about 10,000 videos on they pay (README, "micro-batched
# ranking"). Each list still reflects all of its user's events and is scored before their next.
EVENT_BATCH = 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="replay an event log through the engine in-process (no broker)",
        description="Drive the engine from an event log in log order, with Qdrant in local mode; "
        "print progress, then a summary of what was published and how good it was.",
    )
    add_log_argument(p, "JSON-lines event log (.gz ok; '-' = stdin); default: the shipped sample")
    p.add_argument("--out", help="write every published Recommendations here (JSON lines)")
    p.add_argument(
        "--qdrant-path",
        help="Qdrant local-mode folder to keep (default: a temporary "
        "folder removed at the end; QDRANT_URL selects a server)",
    )
    p.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    p.add_argument("--no-eval", action="store_true", help="skip the prequential evaluation")
    p.add_argument(
        "--event-batch",
        type=positive_int,
        default=EVENT_BATCH,
        help=f"rank up to this many consecutive events' users together, as a loaded worker does "
        f"(1 = one event at a time, as `vidrec evaluate` scores; default {EVENT_BATCH})",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_settings_argument(p)
    p.set_defaults(func=cmd_run)


def _engine_parts(
    qdrant_path: str | None, settings_file: str | None = None, command: str = "run"
) -> tuple[Any, Any, Any]:
    # The engine's modules load torch and qdrant: imported here, not for `vidrec --help`.
    from workers.encoder import load_encoder

    loaded = load_cli_settings(
        command, settings_file, index={"path": qdrant_path} if qdrant_path else None
    )
    if loaded.path:
        print(f"vidrec {command}: settings from {loaded.path}", file=sys.stderr)
    encoder = load_encoder(loaded.encoder)
    return loaded.engine, encoder, loaded.index, loaded.thumbnails


def cmd_run(args: argparse.Namespace) -> int:
    from workers.engine import Engine
    from workers.evaluation import Evaluator
    from workers.index import VideoIndex
    from workers.inprocess import drive

    path = log_or_sample(args.log, must_exist=True)
    print(f"vidrec run: {path}", file=sys.stderr)
    settings, encoder, index_settings, thumb_settings = _engine_parts(
        args.qdrant_path, args.settings
    )
    tmp = None
    if not index_settings.url and not index_settings.path:
        tmp = tempfile.TemporaryDirectory(prefix="vidrec-qdrant-")
        index_settings = index_settings.model_copy(update={"path": tmp.name})
    index = VideoIndex(index_settings, dim=encoder.dim)
    engine = Engine(settings, encoder, index)
    evaluator = None if args.no_eval else Evaluator(fresh_days=settings.fresh_days)
    writer = LogWriter(args.out) if args.out else None
    progress = Progress(count_lines(path, args.limit), "replay", args.quiet)
    reasons: Counter[str] = Counter()
    thumbnails = thumbnail_reader(thumb_settings)

    def on_recommendations(recs: Any) -> None:
        reasons.update(reason_label(it.reason) for it in recs.items)
        if writer:
            writer.write(recs)

    try:
        stats = drive(
            limited(read_log(path), args.limit),
            engine,
            evaluator=evaluator,
            on_recommendations=on_recommendations,
            on_bad=report_bad,
            on_progress=progress,
            event_batch=args.event_batch,
            thumbnails=thumbnails,
        )
    finally:
        progress.close()
        if thumbnails is not None:
            thumbnails.close()
        if writer:
            writer.close()
        index.close()
        if tmp is not None:
            tmp.cleanup()
    summary: dict[str, Any] = {"run": stats.summary()}
    if thumbnails is not None:
        summary["thumbnails"] = dict(thumbnails.counts)
    if evaluator is not None:
        summary["evaluation"] = evaluator.report()
    summary["live"] = live_summary(engine)
    summary["reasons"] = dict(reasons.most_common())
    summary["fusion_weights"] = engine.fusion.as_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_run_summary(summary, args.out)
    return 0


def thumbnail_reader(settings: Any) -> Any:
    """A ``ThumbnailReader`` for a replay when thumbnails are enabled, else None."""
    if not settings.enabled:
        return None
    from workers.thumbnails import ThumbnailReader

    return ThumbnailReader(settings)


def live_summary(engine: Any) -> dict[str, Any]:
    """The engine's live quality (what a worker exports as gauges): over its sliding window,
    and since the start, which counts the same trials as the prequential evaluation."""
    hr, ndcg, n = engine.live.get()
    hr_all, ndcg_all, n_all = engine.live.totals()

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "window": n,
        "hr@10": r(hr),
        "ndcg@10": r(ndcg),
        "events": n_all,
        "all_hr@10": r(hr_all),
        "all_ndcg@10": r(ndcg_all),
    }


def _print_live(live: dict[str, Any]) -> None:
    if not live["events"]:
        print("\nlive quality: no next-positive event was scored")
        return
    print(
        f"\nlive quality (what a worker exports): HR@10 {live['hr@10']:.4f}, NDCG@10 "
        f"{live['ndcg@10']:.4f} over the last {live['window']} next-positive events; "
        f"since the start {live['all_hr@10']:.4f} / {live['all_ndcg@10']:.4f} over "
        f"{live['events']}"
    )


def reason_label(reason: Any) -> str:
    """A reason's kind, with the source of a ``watched`` one: what the summary counts."""
    if reason is None:
        return "none"
    kind = str(reason.kind)
    return f"{kind} ({reason.source})" if reason.source else kind


def _print_run_summary(summary: dict[str, Any], out: str | None) -> None:
    r = summary["run"]
    print(
        f"\nreplayed {r['videos']} videos and {r['events']} user events in {r['seconds']} s "
        f"({r['events_per_s']} events/s); published {r['published']} recommendation lists"
        + (f" to {out}" if out else "")
    )
    print(
        f"skipped {r['bad_lines']} bad lines, {r['duplicates']} duplicate events; "
        f"per-event latency p50 {r['latency_p50_ms']} ms, p99 {r['latency_p99_ms']} ms"
    )
    thumbs = summary.get("thumbnails")
    if thumbs:
        print("thumbnails: " + ", ".join(f"{k} {n}" for k, n in thumbs.items()))
    shown = summary.get("reasons") or {}
    total = sum(shown.values())
    if total:
        print(
            "reasons shown: " + ", ".join(f"{k} {100 * n / total:.1f} %" for k, n in shown.items())
        )
    ev = summary.get("evaluation")
    if ev:
        print("\nnext-event quality (prequential):")
        print(
            f"  {'events':<12}{'n':>8}{'HR@10':>9}{'NDCG@10':>9}{'P@10':>8}{'R@10':>8}"
            f"{'F1@10':>8}{'HR@20':>8}"
        )
        for label, pre in (("all", ""), ("new video", "new_"), ("brand-new", "brand_new_")):
            print(
                f"  {label:<12}{ev[pre + 'events']:>8}{ev[pre + 'hr@10']:>9.4f}"
                f"{ev[pre + 'ndcg@10']:>9.4f}{ev[pre + 'precision@10']:>8.4f}"
                f"{ev[pre + 'recall@10']:>8.4f}{ev[pre + 'f1@10']:>8.4f}"
                f"{ev[pre + 'hr@20']:>8.4f}"
            )
        print(f"  catalogue coverage@10: {ev['coverage@10']:.4f}")
        print(
            f"  lists holding a video the user had already watched: {ev['lists_with_seen']} "
            f"of {ev['lists']}"
        )
    _print_live(summary["live"])
