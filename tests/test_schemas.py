"""Message types: strict validation with clear reasons, JSON round trips, schema export."""

import json
from datetime import UTC, datetime

import pytest

from schemas import (
    SCHEMA_VERSION,
    DecodeError,
    ForgetUser,
    Recommendations,
    UserEvent,
    VideoPublished,
    decode,
    json_schemas,
)
from streams.cli import main

TS = datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_round_trip_every_type():
    msgs = [
        VideoPublished(video_id="v1", title="Pasta", tags=["food"], published_at=TS),
        UserEvent(event_id="e1", user_id="u1", video_id="v1", type="play", ts=TS),
        ForgetUser(user_id="u1", ts=TS),
        Recommendations(user_id="u1", items=[{"video_id": "v1", "score": 1.5}], generated_at=TS),
    ]
    for m in msgs:
        back = decode(m.to_json())
        assert back == m
        assert back.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"kind": "event"}', "event_id"),
        (b'{"kind": "nope"}', "kind"),
        (b'{"video_id": "v"}', "kind: field required"),
        (
            b'{"kind":"event","event_id":"e","user_id":"u","video_id":"v","type":"zap",'
            b'"ts":"2026-01-01T00:00:00Z"}',
            "type",
        ),
        (
            b'{"kind":"event","event_id":"e","user_id":"u","video_id":"v","type":"play",'
            b'"ts":"2026-01-01T00:00:00"}',
            "timezone",
        ),
        (
            b'{"kind":"event","event_id":"","user_id":"u","video_id":"v","type":"play",'
            b'"ts":"2026-01-01T00:00:00Z"}',
            "event_id",
        ),
        (
            b'{"kind":"video","video_id":"v","title":"t","published_at":"2026-01-01T00:00:00Z",'
            b'"surprise":1}',
            "surprise",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_records_raise_decode_error_with_reason(raw, needle):
    with pytest.raises(DecodeError) as info:
        decode(raw)
    assert needle in info.value.reason


def test_expect_allows_missing_kind_and_rejects_other_kinds():
    raw = {
        "event_id": "e",
        "user_id": "u",
        "video_id": "v",
        "type": "like",
        "ts": "2026-01-01T00:00:00+00:00",
    }
    assert isinstance(decode(json.dumps(raw), expect=UserEvent), UserEvent)
    with pytest.raises(DecodeError, match="expected VideoPublished"):
        decode(json.dumps({**raw, "kind": "event"}), expect=VideoPublished)


def test_video_text_includes_title_description_tags_and_category():
    v = VideoPublished(
        video_id="v",
        title="Sourdough",
        description="Bread at home",
        tags=["baking", "bread"],
        category="Howto & Style",
        published_at=TS,
    )
    text = v.text()
    for part in ("Sourdough", "Bread at home", "baking, bread", "Howto & Style"):
        assert part in text


def test_schemas_export_writes_one_file_per_type(tmp_path, capsys):
    assert main(["schemas", "export", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(f"{name}.schema.json" for name in json_schemas())
    schema = json.loads((tmp_path / "UserEvent.schema.json").read_text())
    assert "event_id" in schema["required"]
