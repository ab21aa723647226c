"""``vidrec finetune``: fine-tune the content encoder on the co-watching pairs of an event log."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

from streams.cli.options import Progress, count_lines, report_bad
from streams.wire.eventlog import BadLine, read_log


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune the content encoder on videos users watched in sequence",
        description="Collect pairs of videos each user watched one after the other in LOG (by "
        "default in its first half only, so the second half stays fit for evaluation), train "
        "the encoder contrastively on them on the CPU, and save a model folder for "
        "VIDREC_ENCODER_MODEL_PATH.",
    )
    p.add_argument("log", help="JSON-lines event log (.gz ok)")
    p.add_argument("--out", required=True, help="folder to save the fine-tuned model to")
    p.add_argument(
        "--until-fraction",
        type=float,
        default=0.5,
        help="train on this leading fraction of the log's user events (default 0.5; 1 = all)",
    )
    p.add_argument(
        "--until",
        help="and only on user events before this ISO time (e.g. 2016-01-01T00:00:00Z)",
    )
    p.add_argument(
        "--window", type=int, default=2, help="pair a view with the user's next N videos (2)"
    )
    p.add_argument(
        "--max-per-item", type=int, default=32, help="pairs one video may take part in (32)"
    )
    p.add_argument("--minutes", type=float, default=8.0, help="time budget of the training (8)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the pairs (1)")
    p.add_argument("--batch-size", type=int, default=32, help="pairs a step (32)")
    p.add_argument("--lr", type=float, default=3e-5, help="AdamW learning rate (3e-5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair order and dropout")
    p.add_argument("--base", help="encoder folder to start from (default: the bundled MiniLM)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_finetune)


def _fail(msg: str) -> SystemExit:
    return SystemExit(f"vidrec finetune: {msg}")


def _check_args(args: argparse.Namespace) -> tuple[Path, datetime | None]:
    if args.log != "-" and not Path(args.log).is_file():
        raise _fail(f"no such event log: {args.log}")
    if not 0.0 < args.until_fraction <= 1.0:
        raise _fail("--until-fraction must be in (0, 1]")
    for name in ("window", "max_per_item", "batch_size"):
        if getattr(args, name) < (2 if name == "batch_size" else 1):
            raise _fail(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if args.max_steps is not None and args.max_steps < 1:
        raise _fail("--max-steps must be >= 1")
    if args.minutes <= 0 or args.epochs <= 0 or args.lr <= 0:
        raise _fail("--minutes, --epochs and --lr must be positive")
    until = None
    if args.until:
        try:
            until = datetime.fromisoformat(args.until.replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"--until is not an ISO time: {args.until!r}") from None
        if until.tzinfo is None:
            raise _fail("--until needs a UTC offset (e.g. ...Z or +00:00)")
    if args.base and not (Path(args.base) / "config.json").is_file():
        raise _fail(f"--base is not a Hugging Face model folder (no config.json): {args.base}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise _fail(f"--out is a file, not a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise _fail(f"--out is not empty: {out} (add --overwrite to write into it)")
    try:  # before minutes of training, not after
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".vidrec-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _fail(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out, until


def cmd_finetune(args: argparse.Namespace) -> int:
    out, until = _check_args(args)
    # workers.finetune loads torch and transformers: imported here, not for `vidrec --help`.
    from workers.finetune import PairCollector, TrainSettings, finetune, planned_steps

    collector = PairCollector(window=args.window)
    bad: list[BadLine] = []
    progress = Progress(count_lines(args.log, 0), "reading", args.quiet)
    n = 0
    for n, msg in enumerate(read_log(args.log), start=1):
        if isinstance(msg, BadLine):
            bad.append(msg)
        else:
            collector.learn_one(msg)
        if n % 1000 == 0:
            progress(n)
    progress.close(n)
    for b in bad[:5]:
        report_bad(b, prefix="vidrec finetune")
    if len(bad) > 5:
        print(f"vidrec finetune: {len(bad) - 5} more bad lines skipped", file=sys.stderr)

    cut = collector.cut_position(args.until_fraction, until)
    pairs, report = collector.pairs(
        until_position=cut, max_per_item=args.max_per_item, seed=args.seed
    )
    print(
        f"{report.events_used:,} of {report.events:,} user events (cut-off at "
        f"{report.cut_ts or 'the end'}), {report.users:,} users: {report.pairs:,} pairs "
        f"({report.distinct:,} distinct, {report.capped:,} over the per-video cap, "
        f"{report.same_text:,} same-text and {report.no_text:,} without a video dropped)",
        file=sys.stderr,
    )
    if len(pairs) < 2:
        raise _fail(
            f"too few training pairs ({len(pairs)}) in {args.log} before the cut-off: it needs "
            "users with at least two positive events (play, watch, complete, like, share) on "
            "published videos; raise --until-fraction or --window"
        )

    settings = TrainSettings(
        batch_size=args.batch_size,
        lr=args.lr,
        epochs=args.epochs,
        max_steps=args.max_steps,
        minutes=args.minutes,
        seed=args.seed,
    )
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=planned_steps(len(pairs), settings),
            desc="training",
            unit=" steps",
            file=sys.stderr,
            mininterval=1.0,
        )
    avg: list[float] = []

    def on_step(step: int, loss: float) -> None:
        avg.append(loss)
        if bar is not None:
            recent = avg[-20:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", refresh=False)
            bar.update(1)

    meta = {
        "log": str(Path(args.log).resolve()) if args.log != "-" else "-",
        "until_fraction": args.until_fraction,
        "until": args.until,
        "window": args.window,
        "max_per_item": args.max_per_item,
        "pairs": {k: v for k, v in vars(report).items()},
    }
    t0 = time.monotonic()
    try:
        result = finetune(pairs, out, settings, base=args.base, meta=meta, on_step=on_step)
    except OSError as exc:
        raise _fail(f"cannot save the model to {out}: {exc.strerror or exc}") from None
    finally:
        if bar is not None:
            bar.close()
    print(
        f"{result.steps} steps ({result.stopped}) on {result.pairs:,} pairs in "
        f"{time.monotonic() - t0:.0f} s; loss {result.loss_first} -> {result.loss_last}\n"
        f"saved to {out}; use it with VIDREC_ENCODER_MODEL_PATH={out}",
    )
    return 0
