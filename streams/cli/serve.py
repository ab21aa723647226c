"""``vidrec serve``: the pull API and dashboard over the deployment's topics, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys

from streams.cli.options import add_settings_argument, load_cli_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve users' lists, similar videos, trending, event intake, metrics, dashboard",
        description="An HTTP API over the topics of VIDREC_TOPIC_PREFIX: it reads every "
        "partition of recommendations, videos, video-vectors, item-deltas and stats into a local "
        "store (no consumer group: start more copies to scale out) and answers "
        "GET /users/{id}/recommendations with request-time rules, GET /videos/{id}/similar, "
        "GET /trending, POST /events, /healthz, /readyz, /metrics and the dashboard at /. "
        "OpenAPI at /docs. Configured by VIDREC_SERVE_* (VIDREC_SERVE_API_KEY requires a key), "
        "VIDREC_KAFKA_* and VIDREC_TOPIC_*. Stop with Ctrl-C or SIGTERM.",
    )
    p.add_argument("--host", help="address to bind (default: $VIDREC_SERVE_HOST or 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port (default: $VIDREC_SERVE_PORT or 8000; 0: any free port)"
    )
    add_settings_argument(
        p,
        "settings file of the engine (from `vidrec tune`; default: $VIDREC_SETTINGS_FILE): the "
        "co-occurrence and popularity half-lives the store decays with, as the workers do",
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from streams.serve.app import bind, make_app, run_server
    from streams.serve.settings import ServeSettings

    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = ServeSettings().model_copy(update=updates)
    engine = load_cli_settings("serve", args.settings).engine
    try:
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        print(f"vidrec serve: cannot listen on {settings.host}:{settings.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    auth = "API key required" if settings.api_key else "no API key"
    print(f"vidrec serve: listening on http://{shown}:{port} ({auth}; docs at /docs)",
          file=sys.stderr, flush=True)  # fmt: skip
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again: both end
    # here as a normal stop (exit code 0), not as an interrupted command
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        run_server(make_app(settings, engine=engine), sock, settings.access_log)
    except KeyboardInterrupt:
        pass
    print("vidrec serve: stopped", file=sys.stderr)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
