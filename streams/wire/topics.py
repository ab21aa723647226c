"""Every topic vidrec reads or writes: names, keys, partitions, cleanup, and creating them.

Names are built here and nowhere else, from one prefix (``VIDREC_TOPIC_PREFIX``), so several
deployments (or test runs) share a cluster without seeing each other's records.

| topic | key | carries | cleanup |
| --- | --- | --- | --- |
| ``<p>.videos`` | video_id | ``VideoPublished`` (input) | delete |
| ``<p>.user-events`` | user_id | ``UserEvent`` and ``ForgetUser`` (input; one topic, so a user's
  forget is ordered with their events) | delete |
| ``<p>.recommendations`` | user_id | ``Recommendations`` (output; latest list per user) | compact |
| ``<p>.dead-letters`` | original key | records that failed to decode or validate | delete |
| ``<p>.erasures`` | user_id | ``ErasureReceipt``: what each ``ForgetUser`` erased | delete,
  kept for ``erasure_retention_ms`` (a year by default: the proof outlives the data) |
| ``<p>.item-deltas`` | user_id | internal: item-side effects of each accepted event | delete,
  kept forever by default: a starting worker rebuilds item state from it |
| ``<p>.video-vectors`` | video_id | internal: each embedded video with its vector | compact |
| ``<p>.stats`` | worker id | ``schemas.wire.WorkerStats``: each worker's figures every few
  seconds, for ``vidrec serve``'s dashboard | compact |

Every worker reads *all* partitions of the two internal topics (see ``streams.worker.app``), so item
state is global while user state is partitioned by user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.wire import (
    DEAD_LETTERS,
    ERASURES,
    ITEM_DELTAS,
    RECOMMENDATIONS,
    STATS,
    USER_EVENTS,
    VIDEO_VECTORS,
    VIDEOS,
)
from streams.wire.settings import KafkaSettings


class TopicSettings(BaseSettings):
    """Topic names and layout (``VIDREC_TOPIC_...``).

    Partition counts bound how many workers share the load: a consumer group uses at most one
    worker per partition of ``user-events``.
    """

    model_config = SettingsConfigDict(env_prefix="VIDREC_TOPIC_", extra="ignore")

    prefix: str = Field(
        default="vidrec",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Prefix of every topic name and of the worker group (VIDREC_TOPIC_PREFIX).",
    )
    partitions: int = Field(
        default=6,
        ge=1,
        description="Partitions of videos, user-events and recommendations "
        "(VIDREC_TOPIC_PARTITIONS).",
    )
    internal_partitions: int = Field(
        default=6, ge=1, description="Partitions of item-deltas and video-vectors."
    )
    dead_letter_partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(
        default=1, ge=1, description="Replicas per partition; 3 on a production cluster."
    )
    item_deltas_retention_ms: int = Field(
        default=-1,
        ge=-1,
        description="Retention of item-deltas; -1 keeps them forever, because a starting worker "
        "rebuilds item state (co-counts, item factors, popularity) by replaying them.",
    )
    retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        ge=-1,
        description="Retention of the input, output and dead-letter topics.",
    )
    erasure_retention_ms: int = Field(
        default=365 * 24 * 3600 * 1000,
        ge=-1,
        description="Retention of the erasure receipts (-1: forever).",
    )
    auto_create: bool = Field(
        default=True,
        description="Workers and clients create missing topics at start "
        "(VIDREC_TOPIC_AUTO_CREATE).",
    )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its full name, what keys it, and how the broker should keep it."""

    stage: str
    name: str
    partitions: int
    key: str
    cleanup_policy: str
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False

    def create_options(self, replication_factor: int) -> dict[str, Any]:
        return {
            "num_partitions": self.partitions,
            "replication_factor": replication_factor,
            "configs": {"cleanup.policy": self.cleanup_policy, **self.configs},
        }


class Topics:
    """The topic names of one deployment, as attributes (``topics.user_events`` etc.)."""

    def __init__(self, settings: TopicSettings | None = None) -> None:
        self.settings = s = settings or TopicSettings()
        keep = {"retention.ms": str(s.retention_ms)}
        specs = [
            TopicSpec(VIDEOS, self.name(VIDEOS), s.partitions, "video_id", "delete", keep),
            TopicSpec(USER_EVENTS, self.name(USER_EVENTS), s.partitions, "user_id", "delete", keep),
            TopicSpec(
                RECOMMENDATIONS, self.name(RECOMMENDATIONS), s.partitions, "user_id", "compact"
            ),
            TopicSpec(
                DEAD_LETTERS,
                self.name(DEAD_LETTERS),
                s.dead_letter_partitions,
                "original key",
                "delete",
                keep,
            ),
            TopicSpec(
                ITEM_DELTAS,
                self.name(ITEM_DELTAS),
                s.internal_partitions,
                "user_id",
                "delete",
                {"retention.ms": str(s.item_deltas_retention_ms)},
                internal=True,
            ),
            TopicSpec(
                VIDEO_VECTORS,
                self.name(VIDEO_VECTORS),
                s.internal_partitions,
                "video_id",
                "compact",
                internal=True,
            ),
            TopicSpec(
                ERASURES,
                self.name(ERASURES),
                1,
                "user_id",
                "delete",
                {"retention.ms": str(s.erasure_retention_ms)},
            ),
            TopicSpec(STATS, self.name(STATS), 1, "worker id", "compact"),
        ]
        self.specs: dict[str, TopicSpec] = {spec.stage: spec for spec in specs}

    def name(self, stage: str) -> str:
        return f"{self.settings.prefix}.{stage}"

    @property
    def videos(self) -> str:
        return self.specs[VIDEOS].name

    @property
    def user_events(self) -> str:
        return self.specs[USER_EVENTS].name

    @property
    def recommendations(self) -> str:
        return self.specs[RECOMMENDATIONS].name

    @property
    def dead_letters(self) -> str:
        return self.specs[DEAD_LETTERS].name

    @property
    def item_deltas(self) -> str:
        return self.specs[ITEM_DELTAS].name

    @property
    def video_vectors(self) -> str:
        return self.specs[VIDEO_VECTORS].name

    @property
    def erasures(self) -> str:
        return self.specs[ERASURES].name

    @property
    def stats(self) -> str:
        return self.specs[STATS].name

    @property
    def app_id(self) -> str:
        """faust app id = consumer group of the workers (and prefix of their changelog topics)."""
        return f"{self.settings.prefix}-worker"

    def __iter__(self):  # noqa: ANN204 - iterator of TopicSpec
        return iter(self.specs.values())


def admin_client(kafka: KafkaSettings, timeout_ms: int = 15_000) -> Any:
    """A kafka-python admin client with every timeout capped (for scripts and tests)."""
    from kafka import KafkaAdminClient

    kwargs = kafka.client_kwargs()
    kwargs["request_timeout_ms"] = timeout_ms
    for key in ("bootstrap_timeout_ms", "api_version_auto_timeout_ms"):
        if key in KafkaAdminClient.DEFAULT_CONFIG:
            kwargs[key] = timeout_ms
    return KafkaAdminClient(**kwargs)


def create_topics(
    kafka: KafkaSettings | None = None, topics: Topics | None = None
) -> dict[str, str]:
    """Create every missing topic; existing ones are left alone (idempotent).

    Returns
    -------
    dict
        Topic name -> ``"created"``, ``"exists"`` or ``"exists with N partitions (want M)"``.
        A topic with fewer partitions than configured still works, but caps how many workers
        can share it; partitions are never added here because that would move users between
        partitions and so between workers' state.

    Raises
    ------
    RuntimeError
        When the broker refuses to create a topic for another reason than its existence.
    """
    kafka = kafka or KafkaSettings()
    topics = topics or Topics()
    rf = topics.settings.replication_factor
    admin = admin_client(kafka)
    try:
        existing = set(admin.list_topics())
        missing = {t.name: t.create_options(rf) for t in topics if t.name not in existing}
        result: dict[str, str] = {}
        if missing:
            resp = admin.create_topics(missing, raise_errors=False, wait_for_metadata=True)
            for entry in resp.get("topics", []):
                code = entry.get("error_code", 0)
                if code == 0:
                    result[entry["name"]] = "created"
                elif code == 36:  # TOPIC_ALREADY_EXISTS: another process won the race
                    existing.add(entry["name"])
                else:
                    raise RuntimeError(
                        f"could not create topic {entry['name']}: "
                        f"{entry.get('error_message') or f'error code {code}'}"
                    )
        present = [t for t in topics if t.name in existing]
        if present:
            described = {
                d["name"]: len(d.get("partitions") or [])
                for d in admin.describe_topics([t.name for t in present])
            }
            for t in present:
                n = described.get(t.name, 0)
                result[t.name] = (
                    "exists"
                    if n >= t.partitions
                    else f"exists with {n} partitions (want {t.partitions})"
                )
        return {t.name: result[t.name] for t in topics}
    finally:
        admin.close()


def partition_ids(kafka: KafkaSettings, names: list[str]) -> dict[str, list[int]]:
    """The partition ids of existing topics (missing topics are absent from the result)."""
    admin = admin_client(kafka)
    try:
        present = set(admin.list_topics())
        wanted = [n for n in names if n in present]
        if not wanted:
            return {}
        return {
            d["name"]: sorted(p["partition_index"] for p in d.get("partitions") or [])
            for d in admin.describe_topics(wanted)
        }
    finally:
        admin.close()


def delete_topics(kafka: KafkaSettings, names: list[str]) -> None:
    """Delete topics (tests use it to clean up their own prefix); unknown names are ignored."""
    admin = admin_client(kafka)
    try:
        present = [n for n in names if n in set(admin.list_topics())]
        if present:
            admin.delete_topics(present)
    finally:
        admin.close()


def delete_prefix(kafka: KafkaSettings, prefix: str) -> list[str]:
    """Delete every topic of a deployment, the workers' changelog topics included."""
    admin = admin_client(kafka)
    try:
        mine = [t for t in admin.list_topics() if t.startswith((f"{prefix}.", f"{prefix}-worker"))]
        if mine:
            admin.delete_topics(mine)
        return mine
    finally:
        admin.close()
