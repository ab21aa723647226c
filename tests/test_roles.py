"""Worker roles on the real broker: an embed-only worker beside an events-only worker.

The embed worker is the only one that reads ``videos`` and runs the encoder; the events worker
gets every vector by replication and must still serve lists that name the new videos.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_engine import planted_log

from schemas import UserEvent, VideoPublished
from streams.wire.clients import Sender, consume, make_producer, subscribe
from streams.wire.topics import Topics, TopicSettings, create_topics
from streams.worker.process import WorkerProcess, wait_until_serving

PARTITIONS = 2


def test_register_agents_refuses_unknown_agents_and_a_user_agent_without_table() -> None:
    from types import SimpleNamespace

    from streams.worker.agents import register_agents

    adapter: Any = SimpleNamespace(counts={})
    with pytest.raises(ValueError, match="agents must be some of"):
        register_agents(None, adapter, {}, {}, names=("embed", "train"))
    with pytest.raises(ValueError, match="needs the users table"):
        register_agents(None, adapter, {}, None, names=("learn-and-recommend",))


@pytest.mark.kafka
def test_embed_and_events_workers_split_the_work(kafka_bootstrap, kafka_settings, prefix):
    topics = Topics(TopicSettings(prefix=prefix, partitions=PARTITIONS, internal_partitions=2))
    create_topics(kafka_settings, topics)
    env: dict[str, str | None] = {
        "VIDREC_TOPIC_PREFIX": prefix,
        "VIDREC_TOPIC_PARTITIONS": str(PARTITIONS),
        "VIDREC_TOPIC_INTERNAL_PARTITIONS": "2",
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "VIDREC_ENCODER_MODEL_PATH": "hashing",
        "VIDREC_WORKER_STATUS_INTERVAL_S": "0",
        "VIDREC_QDRANT_PATH": None,
        "QDRANT_URL": None,
    }
    embed = WorkerProcess(f"{prefix}-embed", env={**env, "VIDREC_WORKER_ROLE": "embed"})
    events = WorkerProcess(f"{prefix}-events", env=env, args=["--role", "events"])
    try:
        wait_until_serving([embed], PARTITIONS)  # the videos partitions
        wait_until_serving([events], PARTITIONS)  # the user-events partitions
        log = planted_log(n_videos=20, n_users=4, per_user=3)
        videos = [m for m in log if isinstance(m, VideoPublished)]
        user_events = [m for m in log if isinstance(m, UserEvent)]
        sender = Sender(make_producer(kafka_settings), topics)
        for m in videos:
            sender.send(m)
        sender.flush()
        # every video is embedded once, by the embed worker alone
        vectors = [
            r
            for r in consume(
                kafka_settings, topics.video_vectors, from_beginning=True, timeout_s=20.0
            )
            if r.value is not None
        ]
        assert sorted(r.key.decode() for r in vectors) == sorted(v.video_id for v in videos)
        for e in user_events:
            sender.send(e)
        sender.flush()
        got = []
        for r in subscribe(kafka_settings, topics, from_beginning=True, timeout_s=60.0):
            got.append(r)
            if len(got) >= len(user_events):
                break
        sender.close()
        assert sorted(r.recs.trigger_event_id for r in got) == sorted(
            e.event_id for e in user_events
        )
        # the events worker ranks the replicated catalogue: its lists name the new videos
        known = {v.video_id for v in videos}
        assert all(r.recs.items and {i.video_id for i in r.recs.items} <= known for r in got)
        assert embed.alive() and events.alive()
        assert not any("learn" in line.lower() and "error" in line.lower() for line in embed.lines)
    finally:
        embed.stop()
        events.stop()
