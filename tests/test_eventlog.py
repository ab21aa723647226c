"""Event logs: JSON lines (plain or gzip), bad lines reported with their number, never fatal."""

from datetime import UTC, datetime

from schemas import UserEvent, VideoPublished
from streams.wire.eventlog import BadLine, read_log, write_log

TS = datetime(2026, 1, 1, tzinfo=UTC)


def _msgs():
    return [
        VideoPublished(video_id="v1", title="A video", published_at=TS),
        UserEvent(event_id="e1", user_id="u1", video_id="v1", type="play", ts=TS),
    ]


def test_round_trip_plain_and_gzip(tmp_path):
    for name in ("log.jsonl", "log.jsonl.gz"):
        path = tmp_path / name
        assert write_log(path, _msgs()) == 2
        assert list(read_log(path)) == _msgs()


def test_bad_lines_are_reported_and_skipped(tmp_path):
    good = [m.to_json().decode() for m in _msgs()]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([good[0], "{broken", "", '{"kind": "event"}', good[1]]) + "\n")
    out = list(read_log(path))
    assert out[0] == _msgs()[0] and out[-1] == _msgs()[1]
    bad = [m for m in out if isinstance(m, BadLine)]
    assert [b.lineno for b in bad] == [2, 4]
    assert "not valid JSON" in bad[0].reason
    assert "event_id" in bad[1].reason
