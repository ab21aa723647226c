"""Pseudonymous user ids: keyed, deterministic, and applied before anything is produced."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError
from test_engine import T0, video

from schemas import ForgetUser, Recommendations, UserEvent, decode
from streams import cli
from streams.wire.clients import Pacer, Sender, ingest, replay
from streams.wire.eventlog import read_lines
from streams.wire.privacy import Pseudonymiser, pseudonym
from streams.wire.settings import PrivacySettings
from streams.wire.topics import Topics, TopicSettings, delete_topics

KEY = "k" * 16 + "-test-key"
RAW = ["alice@example.com", "bob.smith-1987", "Zoë 🎬"]
TOPICS = Topics(TopicSettings(prefix="unit"))


class FakeProducer:
    """Keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture(autouse=True)
def _no_key_from_the_shell(monkeypatch):
    monkeypatch.delenv("VIDREC_PSEUDONYMISE_KEY", raising=False)


def _log() -> list:
    msgs: list = [video(i, 0, T0 - timedelta(days=1)) for i in range(3)]
    n = 0
    for step in range(3):
        for user in RAW:
            n += 1
            msgs.append(
                UserEvent(
                    event_id=f"e{n}",
                    user_id=user,
                    video_id=f"v{step}",
                    type="play",
                    ts=T0 + timedelta(minutes=n),
                )
            )
    msgs.append(ForgetUser(user_id=RAW[0], ts=T0 + timedelta(hours=1)))
    return msgs


def _assert_no_raw_id(sent: list[tuple[str, bytes, bytes]]) -> None:
    for user in RAW:
        raw = user.encode()
        escaped = json.dumps(user).strip('"').encode()  # how JSON may spell non-ASCII
        for _, key, value in sent:
            assert raw not in key and raw not in value and escaped not in value


def test_pseudonym_is_deterministic_keyed_and_short():
    p = pseudonym("alice", KEY.encode())
    assert p == pseudonym("alice", KEY.encode())
    assert p.startswith("p-") and len(p) == 34 and int(p[2:], 16) >= 0
    assert p != pseudonym("alice", (KEY + "x").encode())  # another key, another pseudonym
    assert p != pseudonym("alice2", KEY.encode())
    # the published HMAC-SHA256 of RFC 4231 test case 2, truncated to 128 bits
    assert pseudonym("what do ya want for nothing?", b"Jefe") == (
        "p-5bdcc146bf60754e6a042426089575c7"
    )


def test_pseudonymiser_rewrites_every_message_with_a_user_id_and_hides_its_key():
    ps = Pseudonymiser(SecretStr(KEY))
    event, forget = _log()[3], _log()[-1]
    recs = Recommendations(user_id="alice@example.com", items=[], generated_at=T0)
    assert ps.apply(event).user_id == ps.user_id(event.user_id) == pseudonym(RAW[0], KEY.encode())
    assert ps.apply(event).model_dump(exclude={"user_id"}) == event.model_dump(exclude={"user_id"})
    assert ps.apply(forget).user_id == ps.user_id(RAW[0])
    assert ps.apply(recs).user_id == ps.user_id(RAW[0])
    v = video(1, 0, T0)
    assert ps.apply(v) is v
    assert KEY not in repr(ps)
    with pytest.raises(ValueError):
        Pseudonymiser(b"")


def test_settings_read_the_key_from_the_environment_and_never_print_it(monkeypatch):
    assert Pseudonymiser.from_settings(PrivacySettings()) is None
    monkeypatch.setenv("VIDREC_PSEUDONYMISE_KEY", KEY)
    s = PrivacySettings()
    assert KEY not in repr(s) and KEY not in str(s.model_dump())
    ps = Pseudonymiser.from_settings(s)
    assert ps is not None and ps.user_id("alice") == pseudonym("alice", KEY.encode())
    monkeypatch.setenv("VIDREC_PSEUDONYMISE_KEY", "short")
    with pytest.raises(ValidationError, match="16"):
        PrivacySettings()


def test_ingest_with_a_key_produces_no_raw_id_and_keeps_each_user_on_one_key(monkeypatch):
    monkeypatch.setenv("VIDREC_PSEUDONYMISE_KEY", KEY)
    producer = FakeProducer()
    lines = [m.to_json().decode() for m in _log()]
    stats = ingest(read_lines(lines), Sender(producer, TOPICS))  # the key comes from the env
    assert stats.total == len(lines) and stats.bad_lines == 0
    _assert_no_raw_id(producer.sent)
    user_records = [(k, decode(v)) for t, k, v in producer.sent if t == TOPICS.user_events]
    assert len(user_records) == 10
    assert all(k == m.user_id.encode() for k, m in user_records)  # key and value agree
    expected = {pseudonym(u, KEY.encode()) for u in RAW}
    assert {m.user_id for _, m in user_records} == expected
    forget = [m for _, m in user_records if isinstance(m, ForgetUser)]
    assert forget[0].user_id == pseudonym(RAW[0], KEY.encode())  # forget reaches the same user


def test_replay_with_an_explicit_pseudonymiser_and_without_one():
    log = _log()
    producer = FakeProducer()
    replay(log, Sender(producer, TOPICS, Pseudonymiser(KEY)), Pacer(None))
    _assert_no_raw_id(producer.sent)
    assert [decode(v).kind for _, _, v in producer.sent] == [m.kind for m in log]

    plain = FakeProducer()
    replay(log, Sender(plain, TOPICS), Pacer(None))  # no key: ids pass unchanged
    assert [decode(v) for _, _, v in plain.sent] == log


# -- on the real broker ---------------------------------------------------------------------------
@pytest.mark.kafka
def test_vidrec_ingest_and_forget_with_a_key_leave_no_raw_id_on_the_topic(
    kafka_settings, monkeypatch, tmp_path, capsys
):
    from streams.wire.clients import consume

    prefix = f"t-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("VIDREC_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("VIDREC_PSEUDONYMISE_KEY", KEY)
    topics = Topics(TopicSettings(prefix=prefix))
    try:
        log = _log()[:-1]
        path = tmp_path / "in.jsonl"
        path.write_text("".join(m.to_json().decode() + "\n" for m in log))
        assert cli.main(["ingest", str(path)]) == 0
        assert cli.main(["forget", RAW[0]]) == 0
        assert pseudonym(RAW[0], KEY.encode()) in capsys.readouterr().out

        records = []
        for rec in consume(kafka_settings, topics.user_events, from_beginning=True, timeout_s=10):
            records.append(rec)
            if len(records) >= 10:
                break
        assert len(records) == 10
        _assert_no_raw_id([(r.topic, r.key or b"", r.value or b"") for r in records])
        alice = pseudonym(RAW[0], KEY.encode()).encode()
        kinds = [decode(r.value).kind for r in records if r.key == alice]
        assert kinds == ["event", "event", "event", "forget"]
        assert len({r.partition for r in records if r.key == alice}) == 1
    finally:
        delete_topics(kafka_settings, [spec.name for spec in topics])
