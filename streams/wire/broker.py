"""The local single-node broker (``vidrec kafka up|down|status|wait``), plus a readiness probe.

The broker itself is started by ``infra/kafka/kafka.sh`` (Apache Kafka jars from Maven Central,
KRaft, no Docker); this module only finds and runs that script, so the shell script stays the one
place that knows how the broker is configured. ``wait_for_broker`` is the Python side of the same
readiness check, for tests and for commands that must not race a broker that is still starting.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streams.wire.settings import KafkaSettings

ACTIONS = ("up", "down", "status", "wait")


def kafka_script() -> Path:
    """Path of ``infra/kafka/kafka.sh`` in the source checkout.

    The script is not package data: it lives beside the pom that resolves the broker's jars, so
    it is only there in a checkout (the project is installed editable for development).
    """
    script = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "kafka.sh"
    if not script.is_file():
        raise FileNotFoundError(
            f"{script} not found: 'vidrec kafka' needs a source checkout of vidrec "
            "(pip install -e .); with Docker, use 'docker compose up kafka' instead"
        )
    return script


def run_script(action: str, port: int | None = None) -> int:
    """Run one ``kafka.sh`` action in the foreground and return its exit code."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    env = dict(os.environ)
    if port is not None:
        env["VIDREC_KAFKA_PORT"] = str(port)
    return subprocess.run(["bash", str(kafka_script()), action], env=env, check=False).returncode


def _admin_config(
    bootstrap: str, timeout_ms: int, settings: KafkaSettings | None
) -> dict[str, Any]:
    """kafka-python admin options with every timeout capped to ``timeout_ms``.

    kafka-python 2.x calls the bootstrap timeout ``api_version_auto_timeout_ms`` and 3.x
    ``bootstrap_timeout_ms``; only the name this version knows is passed.
    """
    config = settings.client_kwargs() if settings is not None else {}
    config["bootstrap_servers"] = [s.strip() for s in bootstrap.split(",") if s.strip()]
    config["request_timeout_ms"] = timeout_ms
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in KafkaAdminClient.DEFAULT_CONFIG:
            config[key] = timeout_ms
    return config


def wait_for_broker(
    bootstrap: str, timeout_s: float, *, settings: KafkaSettings | None = None
) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request.

    An open port is not enough: a starting broker accepts connections before it has registered
    with its controller, and requests made then fail. This asks for cluster metadata and returns
    once it lists at least one broker.

    Parameters
    ----------
    bootstrap
        Comma-separated ``host:port`` list.
    timeout_s
        Give up after this many seconds.
    settings
        Security options (SASL, TLS) for a secured cluster; None means plaintext.

    Raises
    ------
    TimeoutError
        When no broker answered in time; the message carries the last error seen.
    """
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no Kafka broker answered at {bootstrap} within {timeout_s:g}s: {last_error}"
            )
        attempt_ms = max(100, int(min(remaining, 5.0) * 1000))
        try:
            admin = KafkaAdminClient(**_admin_config(bootstrap, attempt_ms, settings))
        except (KafkaError, OSError) as exc:  # not up yet: remember why and retry
            last_error = f"{type(exc).__name__}: {exc}"
        else:
            try:
                brokers = admin.describe_cluster().get("brokers") or []
            except (KafkaError, OSError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                if brokers:
                    return
                last_error = "cluster metadata lists no broker yet"
            finally:
                admin.close()
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
