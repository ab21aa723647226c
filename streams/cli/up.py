"""``vidrec up``: the whole streaming system on one machine, no Docker, stopped by one Ctrl-C.

It starts the local broker (unless one answers already), creates the topics, starts worker
processes and waits until they serve every partition, replays an event log (a slice of the
shipped sample by default) in a background thread, and prints live recommendations from the
output topic with their end-to-end latency. On Ctrl-C, or once the replay is done and the
workers are quiet, it stops the replay, the workers, and the broker if it started it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from streams.cli.options import (
    add_log_argument,
    add_settings_argument,
    load_cli_settings,
    log_or_sample,
)
from streams.cli.subscribe import format_recommendations
from streams.wire.broker import run_script
from streams.wire.clients import (
    DEFAULT_SPEED,
    Pacer,
    Sender,
    latency_summary,
    make_producer,
    replay,
    subscribe,
)
from streams.wire.eventlog import read_log
from streams.wire.settings import KafkaSettings
from streams.wire.topics import Topics, TopicSettings, create_topics, delete_prefix
from streams.worker.process import WorkerProcess, ensure_broker, wait_until_serving
from workers.settings import SETTINGS_FILE_ENV


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "up",
        help="run everything locally: broker, topics, worker, replay, live recommendations",
        description="Start the local Kafka broker (if none answers), create the topics, start "
        "worker process(es), replay an event log (default: the first --limit lines of the "
        "shipped sample) and print live recommendations as they are published. Ctrl-C stops "
        "the replay, the workers and the broker it started.",
    )
    add_log_argument(p, "event log to replay (default: the shipped sample)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"stream seconds per wall second (default {DEFAULT_SPEED:g})",
    )
    pace.add_argument("--max", action="store_true", help="replay as fast as possible")
    p.add_argument(
        "--limit", type=int, default=5000, help="log lines to replay (0 = all; default 5000)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--user", help="show only this user's lists (all of them)")
    p.add_argument("--all", action="store_true", help="show every list, not one a second")
    p.add_argument("--every", type=float, default=1.0, help="seconds between lists shown")
    p.add_argument("--top", type=int, default=5, help="items shown per list")
    p.add_argument(
        "--drain", type=float, default=5.0, help="quiet seconds after the replay that end the run"
    )
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running at exit")
    p.add_argument(
        "--prefix",
        help="topic prefix (default: VIDREC_TOPIC_PREFIX, else a fresh vidrec-up-XXXXXX whose "
        "topics are deleted at exit)",
    )
    p.add_argument("--keep-topics", action="store_true", help="keep a fresh prefix's topics")
    p.add_argument("--verbose", action="store_true", help="echo the workers' log lines")
    add_settings_argument(
        p,
        "settings file the workers load (from `vidrec tune`; default: "
        "$VIDREC_SETTINGS_FILE, which the workers inherit)",
    )
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    settings_file = str(Path(args.settings).resolve()) if args.settings else None
    load_cli_settings("up", settings_file)  # a bad file stops here, not in every worker
    kafka = KafkaSettings()
    # A demo run gets topics of its own (removed at exit), so running it twice shows lists
    # twice: on the same topics every replayed event would be a known duplicate.
    ephemeral = not (args.prefix or os.environ.get("VIDREC_TOPIC_PREFIX"))
    prefix = args.prefix or (f"vidrec-up-{uuid.uuid4().hex[:6]}" if ephemeral else None)
    topic_settings = TopicSettings()
    if prefix:
        topic_settings = topic_settings.model_copy(update={"prefix": prefix})
    topics = Topics(topic_settings)
    path = log_or_sample(args.log)
    if not Path(path).exists():
        print(f"vidrec up: no such event log: {path}", file=sys.stderr)
        return 2
    try:
        started_broker = ensure_broker(kafka)
    except (TimeoutError, RuntimeError, FileNotFoundError) as exc:
        print(f"vidrec up: no broker: {exc}", file=sys.stderr)
        return 1
    workers: list[WorkerProcess] = []
    stop = threading.Event()
    replay_done = threading.Event()
    stats_box: dict[str, Any] = {}
    latencies: list[float] = []
    code = 0
    try:
        print(f"vidrec up: topics {topics.settings.prefix}.*", file=sys.stderr)
        create_topics(kafka, topics)
        echo = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else None
        for i in range(args.workers):
            env: dict[str, str | None] = {"VIDREC_TOPIC_PREFIX": topics.settings.prefix}
            if settings_file:
                env[SETTINGS_FILE_ENV] = settings_file
            workers.append(WorkerProcess(f"worker-{i + 1}", env=env, echo=echo))
        print(
            f"vidrec up: starting {args.workers} worker(s) (loading the encoder) ...",
            file=sys.stderr,
        )
        wait_until_serving(workers, topics.specs["user-events"].partitions)
        print("vidrec up: workers ready", file=sys.stderr)

        def run_replay() -> None:
            sender = Sender(make_producer(kafka), topics)
            pacer = Pacer(None if args.max else args.speed)
            try:
                messages = read_log(path)
                if args.limit:
                    messages = (m for n, m in enumerate(messages, 1) if n <= args.limit)
                stats_box["stats"] = replay(messages, sender, pacer, stop=stop)
            finally:
                sender.close()
                replay_done.set()

        def start_replay() -> None:
            pace = "as fast as possible" if args.max else f"at {args.speed:g}x"
            print(
                f"vidrec up: replaying {path}"
                + (f" (first {args.limit} lines)" if args.limit else "")
                + f" {pace}; Ctrl-C stops everything",
                file=sys.stderr,
            )
            threading.Thread(target=run_replay, name="replay", daemon=True).start()

        last_rx = [time.monotonic()]

        def watch() -> None:
            """End the run once the replay is over and the workers have gone quiet."""
            while not stop.wait(0.2):
                dead = [w for w in workers if not w.alive()]
                if dead:
                    print(f"vidrec up: {dead[0].name} exited:", file=sys.stderr)
                    print("\n".join(dead[0].lines[-20:]), file=sys.stderr)
                    stop.set()
                elif replay_done.is_set() and time.monotonic() - last_rx[0] > args.drain:
                    stop.set()

        threading.Thread(target=watch, name="watch", daemon=True).start()
        last_shown = 0.0
        for n, r in enumerate(
            subscribe(kafka, topics, user=args.user, stop=stop, on_ready=start_replay), start=1
        ):
            last_rx[0] = time.monotonic()
            if r.e2e_ms is not None:
                latencies.append(r.e2e_ms)
            if args.all or args.user or last_rx[0] - last_shown >= args.every:
                last_shown = last_rx[0]
                print(f"[{n}] " + format_recommendations(r, args.top), flush=True)
        stats = stats_box.get("stats")
        if stats is not None:
            print(f"\nvidrec up: replay {stats.summary()}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nvidrec up: stopping ...", file=sys.stderr)
        code = 130
    except RuntimeError as exc:
        print(f"vidrec up: {exc}", file=sys.stderr)
        code = 1
    finally:
        stop.set()
        if latencies:
            print(
                f"vidrec up: {len(latencies)} recommendation lists received; end-to-end "
                f"latency {latency_summary(latencies)}",
                file=sys.stderr,
            )
        for w in workers:
            w.stop()
        if ephemeral and not args.keep_topics:
            delete_prefix(kafka, topics.settings.prefix)
        if started_broker and not args.keep_broker:
            run_script("down")
        elif started_broker:
            print("vidrec up: broker left running ('vidrec kafka down' stops it)", file=sys.stderr)
    return code
