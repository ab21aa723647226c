"""Shared pytest fixtures; each section belongs to the module it serves."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams.wire.broker import wait_for_broker
from streams.wire.settings import KafkaSettings
from streams.wire.topics import delete_prefix
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.index import VideoIndex
from workers.settings import EngineSettings, IndexSettings

# ---------------------------------------------------------------------------------------------
# Kafka: the real broker (tests marked ``kafka``)
#
# Tests marked ``@pytest.mark.kafka`` are skipped when no broker answers, so a laptop without one
# still runs the rest of the suite. CI (``.ci/run``) sets VIDREC_REQUIRE_KAFKA=1 after starting
# the broker; then a missing broker is an error, never a silent skip.
# ---------------------------------------------------------------------------------------------


def _kafka_required() -> bool:
    return os.environ.get("VIDREC_REQUIRE_KAFKA", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    """Connection settings from the environment (``VIDREC_KAFKA_BOOTSTRAP_SERVERS`` etc.)."""
    return KafkaSettings()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_settings: KafkaSettings) -> str:
    """Bootstrap servers of a broker that answers; skips (or fails in CI) when there is none."""
    required = _kafka_required()
    bootstrap = kafka_settings.bootstrap_servers
    try:
        # CI waits longer: the broker it just started may still be settling.
        wait_for_broker(bootstrap, timeout_s=30.0 if required else 3.0, settings=kafka_settings)
    except TimeoutError as exc:
        if required:
            pytest.fail(f"VIDREC_REQUIRE_KAFKA=1 but no broker answers: {exc}", pytrace=False)
        pytest.skip(f"no Kafka broker at {bootstrap} (start one with 'vidrec kafka up'): {exc}")
    return bootstrap


@pytest.fixture(autouse=True)
def _kafka_marker_needs_broker(request: pytest.FixtureRequest) -> None:
    """Give every ``kafka``-marked test the broker check, even one that never asks for it."""
    if request.node.get_closest_marker("kafka") is not None:
        request.getfixturevalue("kafka_bootstrap")


# ------------------------------------------------------------------------------- end of Kafka


# ---------------------------------------------------------------------------------------------
# The engine: a small one on the model-free encoder and an in-memory Qdrant
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """``make_engine(**settings)``: a fresh engine with ``k=10`` (settings override it), on
    ``HashingEncoder`` and an embedded in-memory index that is closed after the test."""
    indexes: list[VideoIndex] = []

    def make(**settings: object) -> Engine:
        enc = HashingEncoder()
        idx = VideoIndex(IndexSettings(path=None), dim=enc.dim)
        indexes.append(idx)
        return Engine(EngineSettings(**{"k": 10, **settings}), enc, idx)

    yield make
    for idx in indexes:
        idx.close()


@pytest.fixture
def prefix(kafka_settings: KafkaSettings) -> Iterator[str]:
    """A topic prefix (and worker group) of this test alone; its topics are deleted after."""
    p = f"t-{uuid.uuid4().hex[:10]}"
    yield p
    delete_prefix(kafka_settings, p)
