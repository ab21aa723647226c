"""``vidrec soak``: its pieces without a broker, and a few seconds of it on the real broker."""

from __future__ import annotations

import json
import os

import pytest
from test_engine import planted_log

from schemas import UserEvent
from streams.bench.soak import SoakReport, cycled, rss_mb
from streams.wire.eventlog import write_log


def test_cycled_log_gives_fresh_event_ids_later_in_time_and_no_second_catalogue():
    log = planted_log(n_videos=6, n_users=2, per_user=3)
    out = []
    for m in cycled(log, span_s=3600.0):
        out.append(m)
        if len(out) == len(log) + 2 * 6:
            break
    events = [m for m in out if isinstance(m, UserEvent)]
    assert len(out) - len(events) == 6  # the videos once
    assert len({e.event_id for e in events}) == len(events) == 18
    assert all(b.ts > a.ts for a, b in zip(events, events[1:], strict=False))


def test_report_fails_on_a_lost_list_a_missing_dead_letter_or_a_dead_worker():
    good = SoakReport(seconds=1.0, rate=10.0, events_sent=10, bad_sent=1, dead_letters=1)
    assert good.ok and good.to_dict()["ok"]
    assert not SoakReport(seconds=1.0, rate=10.0, missing=1).ok
    assert not SoakReport(seconds=1.0, rate=10.0, bad_sent=2, dead_letters=1).ok
    assert not SoakReport(seconds=1.0, rate=10.0, workers_alive=False).ok


def test_rss_of_this_process_and_of_none():
    assert rss_mb(os.getpid()) > 10
    assert rss_mb(2**22 + 12345) is None


@pytest.mark.kafka
def test_a_short_soak_on_the_broker_reports_nothing_lost(
    kafka_settings, tmp_path, monkeypatch, capsys
):
    from streams.cli import main

    log = planted_log(n_videos=30, n_users=6, per_user=6)  # 36 events: cycled several times
    write_log(tmp_path / "log.jsonl", log)
    monkeypatch.setenv("VIDREC_KAFKA_BOOTSTRAP_SERVERS", kafka_settings.bootstrap_servers)
    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", "hashing")
    monkeypatch.setenv("VIDREC_WORKER_STATUS_INTERVAL_S", "0")
    monkeypatch.delenv("VIDREC_QDRANT_PATH", raising=False)
    monkeypatch.delenv("QDRANT_URL", raising=False)
    monkeypatch.delenv("VIDREC_TOPIC_PREFIX", raising=False)
    code = main(
        [
            "soak",
            "--seconds", "4",
            "--rate", "40",
            "--log", str(tmp_path / "log.jsonl"),
            "--bad-every", "40",
            "--sample-every", "1",
            "--drain", "90",
            "--json",
            "--quiet",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"], report
    assert report["events_sent"] >= 100  # 4 s at 40/s, from a log of 36 events
    assert report["lists_distinct"] == report["events_sent"] and report["missing"] == 0
    assert report["bad_sent"] == report["events_sent"] // 40 == report["dead_letters"]
    assert len(report["samples"]) >= 4
    assert all(s["rss_mb"] and s["rss_mb"][0] > 50 for s in report["samples"])
    assert report["lag"]["last"] is not None and report["latency_ms"]["n"] >= 100
