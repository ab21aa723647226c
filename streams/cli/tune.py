"""``vidrec tune``: search the engine's settings on a log, validate them, write a settings file."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from streams.cli.options import load_cli_settings, report_bad
from streams.wire.eventlog import BadLine, read_log
from workers.settings import SETTINGS_FILE_ENV, SettingsFileError, write_settings_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="tune the engine's settings on an event log and write a settings file",
        description="Replay the first part of LOG (by default its first half of user events) "
        "with random variations of the engine's settings, keeping the best third on ever longer "
        "prefixes (successive halving, scored by next-event NDCG@10 with brand-new HR@10 as a "
        "guard); replay the finalists and the defaults over the whole log and compare them on "
        "the held-out rest; write the winner as a settings file for `vidrec run/evaluate/worker/"
        "up --settings FILE` (or $" + SETTINGS_FILE_ENV + "). The winner is the defaults unless "
        "a finalist beats them on the held-out part.",
    )
    p.add_argument("log", help="JSON-lines event log (.gz ok)")
    p.add_argument("--out", default="vidrec-settings.json", help="settings file to write")
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=40.0,
        help="wall-time cap: fewer trials (and finalists) are run when they would not fit "
        "(default 40)",
    )
    p.add_argument(
        "--trials",
        type=int,
        default=16,
        help="random trials besides the defaults (default 16; fewer when the budget is short)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random search")
    p.add_argument(
        "--finalists",
        type=int,
        default=3,
        help="trials replayed over the whole log with the defaults (default 3; fewer when the "
        "budget is short)",
    )
    p.add_argument(
        "--encoder",
        choices=("hashing", "minilm"),
        default="hashing",
        help="content encoder of the replays (default hashing: fast, model-free; minilm: the "
        "real one, each video embedded once)",
    )
    p.add_argument("--plot", help="draw HR@10 per tenth of the stream, defaults vs tuned (PNG)")
    p.add_argument(
        "--plot-search",
        metavar="FILE.png",
        help="draw the search (PNG): each replay's NDCG@10 in launch order with the best so far "
        "per rung and on the held-out part, and each changed setting's trial values against "
        "their first-rung NDCG@10",
    )
    p.add_argument(
        "--tune-fraction",
        type=float,
        default=0.5,
        help="share of the user events tuned on; the rest is held out (default 0.5)",
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_tune)


def _clock(s: float) -> str:
    m, sec = divmod(int(s), 60)
    return f"{m}m{sec:02d}s"


def _progress(quiet: bool) -> Any:
    def report(p: Any) -> None:
        if quiet:
            return
        best = f"best NDCG@10 {p.best:.4f}" if p.best is not None else "best -"
        note = f"  ({p.note})" if p.note else ""
        print(
            f"tune: {p.stage}: trial {p.done}/{p.total}  {best}  elapsed {_clock(p.elapsed_s)}"
            + note,
            file=sys.stderr,
            flush=True,
        )

    return report


def cmd_tune(args: argparse.Namespace) -> int:
    # The encoder and the tuner load torch: imported here, not for `vidrec --help`.
    from workers.encoder import HashingEncoder, load_encoder
    from workers.tuning import TuneError

    if not Path(args.log).exists():
        raise SystemExit(f"vidrec tune: no such event log: {args.log}")
    if not 0.05 <= args.tune_fraction <= 0.95:
        raise SystemExit("vidrec tune: --tune-fraction must be between 0.05 and 0.95")
    if args.trials < 1:
        raise SystemExit("vidrec tune: --trials must be at least 1")
    if args.plot or args.plot_search:
        # before a search that may take its whole budget, not after it
        from streams.cli.plots import PlotError, require_matplotlib

        try:
            require_matplotlib("tune --plot")
        except PlotError as exc:
            raise SystemExit(str(exc)) from None
    loaded = load_cli_settings("tune", None)
    if args.encoder == "hashing":
        encoder: Any = HashingEncoder()
    else:
        enc = loaded.encoder
        if enc.model_path == "hashing":
            enc = enc.model_copy(update={"model_path": None})
        encoder = load_encoder(enc)
    say = (lambda text: None) if args.quiet else (lambda text: print(text, file=sys.stderr))
    say(f"vidrec tune: reading {args.log}")
    messages = []
    for msg in read_log(args.log):
        if isinstance(msg, BadLine):
            report_bad(msg)
        else:
            messages.append(msg)
    say(
        f"vidrec tune: {len(messages)} messages; {args.trials} trials, {args.workers} worker(s), "
        f"budget {args.budget_minutes:g} min, encoder {encoder.name}"
    )
    try:
        result = run_tune(messages, encoder, loaded.engine, args)
    except TuneError as exc:
        raise SystemExit(f"vidrec tune: {exc}") from None
    print(format_result(result))
    held = result.best.validation["heldout"]
    about = {
        "made_by": "vidrec tune",
        "log": str(Path(args.log).resolve()),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "encoder": encoder.name,
        "seed": args.seed,
        "trials": len(result.trials) - 1,
        "tuning_user_events": result.tuning_events,
        "heldout_user_events": result.user_events - result.tuning_events,
        "score": {k: round(v, 5) for k, v in held.items() if isinstance(v, float)},
        "defaults_score": {
            k: round(v, 5)
            for k, v in result.defaults.validation["heldout"].items()
            if isinstance(v, float)
        },
    }
    try:
        write_settings_file(args.out, engine=result.changed, about=about)
    except SettingsFileError as exc:
        raise SystemExit(f"vidrec tune: {exc}") from None
    print(
        f"\nwrote {args.out}: use it with `vidrec run --settings {args.out}` or {SETTINGS_FILE_ENV}"
    )
    if args.plot:
        from streams.cli.plots import plot_curves

        plot_curves(result, args.plot)
        print(f"plot: {args.plot}")
    if args.plot_search:
        from streams.cli.plots import plot_search

        plot_search(result, args.plot_search, loaded.engine)
        print(f"search plot: {args.plot_search}")
    return 0


def run_tune(messages: list[Any], encoder: Any, base: Any, args: argparse.Namespace) -> Any:
    from workers.tuning import tune

    return tune(
        messages,
        encoder,
        trials=args.trials,
        finalists=max(1, args.finalists),
        seed=args.seed,
        tune_fraction=args.tune_fraction,
        workers=max(1, args.workers),
        budget_s=args.budget_minutes * 60.0,
        base=base,
        progress=_progress(args.quiet),
    )


def format_result(result: Any) -> str:
    rows = [
        f"\ntuned on the first {result.tuning_events} user events, held out "
        f"{result.user_events - result.tuning_events}; rungs of {result.rung_events} events; "
        f"{len(result.trials) - 1} trials in {_clock(result.seconds)}",
        f"searched: {', '.join(result.knobs)}",
    ]
    if result.skipped:
        rows.append("skipped: " + "; ".join(result.skipped))
    rows += [
        "",
        "| system | tuning NDCG@10 | held-out HR@10 | held-out NDCG@10 | brand-new HR@10 | "
        "events/s | changed |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    shown = [result.defaults] + [t for t in result.finalists]
    for t in shown:
        v = t.validation
        name = "defaults" if t.key == 0 else f"trial {t.key}"
        if t is result.best:
            name += " (chosen)"
        changed = ", ".join(f"{k}={v}" for k, v in sorted(t.overrides.items())) or "-"
        h = v["heldout"]
        rows.append(
            f"| {name} | {v['tuning']['ndcg@10']:.4f} | {h['hr@10']:.4f} | {h['ndcg@10']:.4f} | "
            f"{h['brand_new_hr@10']:.4f} | {v['events_per_s']:.0f} | {changed} |"
        )
    rest = sorted(
        (t for t in result.trials if t.key != 0 and t not in result.finalists and t.rungs),
        key=lambda t: (-len(t.rungs), -t.score),
    )[:3]
    for t in rest:
        changed = ", ".join(f"{k}={v}" for k, v in sorted(t.overrides.items()))
        rows.append(
            f"  out at rung {len(t.rungs)}: trial {t.key} (NDCG@10 {t.score:.4f}): {changed}"
        )
    if result.best is result.defaults:
        rows.append("\nno finalist beat the defaults on the held-out part: the defaults are kept")
    else:
        changed = ", ".join(f"{k}: {v}" for k, v in sorted(result.changed.items()))
        rows.append(f"\nchanged settings: {changed}")
    return "\n".join(rows)
