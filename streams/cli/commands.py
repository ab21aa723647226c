"""``vidrec run``, ``vidrec evaluate`` and ``vidrec schemas export``: the embedded jobs' CLI."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from schemas import Recommendations, UserEvent, VideoPublished, json_schemas
from streams.wire.eventlog import BadLine, LogWriter, read_log
from workers.settings import SETTINGS_FILE_ENV


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="replay an event log through the engine in-process (no broker)",
        description="Drive the engine from an event log in log order, with Qdrant in local mode; "
        "print progress, then a summary of what was published and how good it was.",
    )
    p.add_argument(
        "log",
        nargs="?",
        help="JSON-lines event log (.gz ok; '-' = stdin); default: the shipped sample",
    )
    p.add_argument("--out", help="write every published Recommendations here (JSON lines)")
    p.add_argument(
        "--qdrant-path",
        help="Qdrant local-mode folder to keep (default: a temporary "
        "folder removed at the end; QDRANT_URL selects a server)",
    )
    p.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    p.add_argument("--no-eval", action="store_true", help="skip the prequential evaluation")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--settings",
        metavar="FILE",
        help=f"settings file (from `vidrec tune`; default: ${SETTINGS_FILE_ENV}); flags and "
        "VIDREC_* variables override it",
    )
    p.set_defaults(func=cmd_run)

    e = sub.add_parser(
        "evaluate",
        help="next-event evaluation of published recommendations, or of baselines",
        description="Score RECS (from `vidrec run --out`) against LOG with the prequential "
        "next-event protocol; with --baselines, replay LOG through the hybrid engine and each "
        "baseline in the same loop and print one table.",
    )
    e.add_argument("log", nargs="?", help="event log; default: the shipped sample")
    e.add_argument("recs", nargs="?", help="recommendations file from `vidrec run --out`")
    e.add_argument("--baselines", action="store_true", help="run the hybrid and every baseline")
    e.add_argument("--only", help="comma-separated subset of systems for --baselines")
    e.add_argument("--limit", type=int, default=0, help="stop after this many log lines")
    e.add_argument("--json", action="store_true", help="print results as JSON")
    e.add_argument("--markdown", help="also write the table as markdown to this file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument(
        "--settings",
        metavar="FILE",
        help=f"settings file (from `vidrec tune`; default: ${SETTINGS_FILE_ENV}); flags and "
        "VIDREC_* variables override it",
    )
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("schemas", help="message schemas")
    ssub = s.add_subparsers(dest="schemas_cmd", required=True)
    x = ssub.add_parser("export", help="write one JSON Schema file per message type")
    x.add_argument("dir")
    x.set_defaults(func=cmd_schemas_export)


# -- helpers --------------------------------------------------------------------------------
def _log_path(arg: str | None) -> str:
    if arg:
        if arg != "-" and not Path(arg).exists():
            raise SystemExit(f"vidrec: no such event log: {arg}")
        return arg
    from streams.sample.generator import default_sample_path

    return str(default_sample_path())


def _messages(path: str, limit: int) -> Iterator[Any]:
    for n, msg in enumerate(read_log(path), start=1):
        if limit and n > limit:
            return
        yield msg


def _report_bad(bad: BadLine) -> None:
    print(f"vidrec: line {bad.lineno}: skipped: {bad.reason}", file=sys.stderr)


class _Progress:
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


def _count_lines(path: str, limit: int) -> int | None:
    if path == "-":
        return None
    from streams.wire.eventlog import open_text

    with open_text(path) as f:
        n = sum(1 for _ in f)
    return min(n, limit) if limit else n


def load_cli_settings(command: str, settings_file: str | None, **overrides: Any) -> Any:
    """``workers.settings.load_settings`` for a command: flags (``overrides``) > environment >
    settings file (``--settings`` or $VIDREC_SETTINGS_FILE) > defaults; a bad file or value
    ends the command with a one-line error naming the key."""
    from workers.settings import SettingsFileError, load_settings

    try:
        return load_settings(settings_file, **overrides)
    except SettingsFileError as exc:
        raise SystemExit(f"vidrec {command}: {exc}") from None


def _engine_parts(
    qdrant_path: str | None, settings_file: str | None = None, command: str = "run"
) -> tuple[Any, Any, Any]:
    from workers.encoder import load_encoder

    loaded = load_cli_settings(
        command, settings_file, index={"path": qdrant_path} if qdrant_path else None
    )
    if loaded.path:
        print(f"vidrec {command}: settings from {loaded.path}", file=sys.stderr)
    encoder = load_encoder(loaded.encoder)
    return loaded.engine, encoder, loaded.index


def _fmt(x: float) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


# -- vidrec run ------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from workers.engine import Engine
    from workers.evaluation import Evaluator
    from workers.index import VideoIndex
    from workers.inprocess import drive

    path = _log_path(args.log)
    print(f"vidrec run: {path}", file=sys.stderr)
    settings, encoder, index_settings = _engine_parts(args.qdrant_path, args.settings)
    tmp = None
    if not index_settings.url and not index_settings.path:
        tmp = tempfile.TemporaryDirectory(prefix="vidrec-qdrant-")
        index_settings = index_settings.model_copy(update={"path": tmp.name})
    index = VideoIndex(index_settings, dim=encoder.dim)
    engine = Engine(settings, encoder, index)
    evaluator = None if args.no_eval else Evaluator(fresh_days=settings.fresh_days)
    writer = LogWriter(args.out) if args.out else None
    progress = _Progress(_count_lines(path, args.limit), "replay", args.quiet)
    try:
        stats = drive(
            _messages(path, args.limit),
            engine,
            evaluator=evaluator,
            on_recommendations=writer.write if writer else None,
            on_bad=_report_bad,
            on_progress=progress,
        )
    finally:
        progress.close()
        if writer:
            writer.close()
        index.close()
        if tmp is not None:
            tmp.cleanup()
    summary: dict[str, Any] = {"run": stats.summary()}
    if evaluator is not None:
        summary["evaluation"] = evaluator.report()
    summary["fusion_weights"] = engine.fusion.as_dict()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_run_summary(summary, args.out)
    return 0


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


# -- vidrec evaluate -------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    path = _log_path(args.log)
    if args.baselines:
        return _evaluate_baselines(path, args)
    if not args.recs:
        raise SystemExit("vidrec evaluate: give RECS (from `vidrec run --out`) or --baselines")
    report = evaluate_files(path, args.recs, args.limit)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:<24}{_fmt(v)}")
    return 0


def evaluate_files(log: str, recs: str, limit: int = 0) -> dict[str, Any]:
    """Score a recommendations file against its log: the list triggered by each event is the one
    shown before the user's next event.

    A trigger with several lists (a worker that crashed after publishing and published again
    for the redelivered event) counts with its first list in the file, which is the one the
    user saw first; the later ones are ignored.
    """
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

    for msg in _messages(log, limit):
        if isinstance(msg, VideoPublished):
            ev.on_video(msg)
        elif isinstance(msg, UserEvent):
            ev.on_event(msg)
            r = recs_for(msg.event_id)
            if r is not None:
                ev.on_recommendations(r)
    return ev.report()


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
)


def run_systems(
    path: str,
    systems: tuple[str, ...] = SYSTEMS,
    limit: int = 0,
    quiet: bool = True,
    encoder: Any = None,
    settings: Any = None,
) -> dict[str, dict[str, Any]]:
    """Replay ``path`` through each system in the same loop; metrics by system name.

    The encoder is loaded only when a system needs it (not for the independent baselines).
    """
    from workers.encoder import HashingEncoder
    from workers.evaluation import Evaluator
    from workers.index import VideoIndex
    from workers.inprocess import INDEPENDENT, CachedEncoder, drive, make_engine
    from workers.settings import EngineSettings, IndexSettings

    if encoder is None:
        if all(s in INDEPENDENT for s in systems):
            encoder = HashingEncoder()  # never called: the baselines take no encoder
        else:
            from workers.encoder import load_encoder

            encoder = load_encoder()
    settings = settings or EngineSettings()
    cached = CachedEncoder(encoder)
    total = _count_lines(path, limit)
    results: dict[str, dict[str, Any]] = {}
    for name in systems:
        indexes: list[Any] = []

        def index_factory(indexes: list[Any] = indexes) -> Any:
            idx = VideoIndex(IndexSettings(path=None), dim=cached.dim)
            indexes.append(idx)
            return idx

        engine = make_engine(name, settings, cached, index_factory)
        ev = Evaluator(fresh_days=settings.fresh_days)
        progress = _Progress(total, f"{name:>17}", quiet)
        t0 = time.perf_counter()
        try:
            stats = drive(_messages(path, limit), engine, evaluator=ev, on_progress=progress)
        finally:
            progress.close()
            for idx in indexes:
                idx.close()
        res = ev.report()
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
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"vidrec evaluate: unknown systems {unknown}; choose from {SYSTEMS}")
    from workers.encoder import load_encoder

    loaded = load_cli_settings("evaluate", args.settings)
    results = run_systems(
        path,
        systems,
        args.limit,
        quiet=args.quiet,
        encoder=load_encoder(loaded.encoder),
        settings=loaded.engine,
    )
    table = format_table(results)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n", encoding="utf-8")
    return 0


# -- vidrec schemas export -------------------------------------------------------------------
def cmd_schemas_export(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in json_schemas().items():
        (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")
        print(out / f"{name}.schema.json")
    return 0
