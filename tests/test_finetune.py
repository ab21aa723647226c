"""Fine-tuning the encoder: pairs from a log (window, cut-off, dedup, cap) and a tiny run."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from schemas import EventType, UserEvent, VideoPublished
from streams.cli import main
from streams.wire.eventlog import write_log
from workers.finetune import (
    META_FILE,
    Pair,
    PairCollector,
    TrainSettings,
    contrastive_loss,
    finetune,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TEXTS = {
    "v1": "Pasta carbonara in ten minutes",
    "v2": "Homemade pizza dough",
    "v3": "Tiramisu without eggs",
    "v4": "Espresso at home",
    "v5": "Same title",
    "v6": "Same title",
}


def _video(vid: str) -> VideoPublished:
    return VideoPublished(video_id=vid, title=TEXTS[vid], published_at=T0)


class _Log:
    def __init__(self) -> None:
        self.msgs: list[object] = [_video(v) for v in TEXTS]
        self.n = 0

    def ev(self, user: str, video: str, kind: EventType = EventType.WATCH) -> _Log:
        self.n += 1
        ts = T0 + timedelta(minutes=self.n)
        self.msgs.append(
            UserEvent(event_id=f"e{self.n}", user_id=user, video_id=video, type=kind, ts=ts)
        )
        return self

    def collector(self, window: int) -> PairCollector:
        c = PairCollector(window=window)
        for m in self.msgs:
            c.learn_one(m)
        return c


def _ids(pairs: list[Pair]) -> set[tuple[str, str]]:
    return {(p.a, p.b) for p in pairs}


def _sequence_log() -> _Log:
    # u1 views v1 v2 v3 v4; the re-watch of v1 and the skip of v2 are not steps of the sequence
    return (
        _Log()
        .ev("u1", "v1", EventType.PLAY)
        .ev("u1", "v2")
        .ev("u1", "v1", EventType.LIKE)
        .ev("u1", "v2", EventType.SKIP)
        .ev("u1", "v3", EventType.COMPLETE)
        .ev("u1", "v4", EventType.SHARE)
    )


def test_window_one_pairs_each_view_with_the_next_distinct_one() -> None:
    pairs, report = _sequence_log().collector(window=1).pairs()
    assert _ids(pairs) == {("v1", "v2"), ("v2", "v3"), ("v3", "v4")}
    assert report.users == 1 and report.pairs == 3


def test_window_two_adds_the_view_after_next() -> None:
    pairs, _ = _sequence_log().collector(window=2).pairs()
    assert _ids(pairs) == {("v1", "v2"), ("v2", "v3"), ("v3", "v4"), ("v1", "v3"), ("v2", "v4")}
    assert {(p.a_text, p.b_text) for p in pairs if p.a == "v1" and p.b == "v2"} == {
        (TEXTS["v1"], TEXTS["v2"])
    }


def test_negative_events_do_not_make_pairs() -> None:
    log = _Log().ev("u1", "v1", EventType.SKIP).ev("u1", "v2", EventType.DISLIKE)
    log.ev("u1", "v3", EventType.IMPRESSION)
    pairs, report = log.collector(window=2).pairs()
    assert pairs == [] and report.events == 3


def test_cut_off_by_position_fraction_and_time() -> None:
    c = _sequence_log().collector(window=1)  # 6 user events
    assert c.cut_position(0.5) == 3
    assert c.cut_position(until_ts=T0 + timedelta(minutes=5)) == 4  # events 1-4 are earlier
    assert c.cut_position(0.5, T0 + timedelta(minutes=5)) == 3  # the stricter one
    pairs, report = c.pairs(until_position=3)
    assert _ids(pairs) == {("v1", "v2")}
    assert report.events_used == 3 and report.cut_ts == (T0 + timedelta(minutes=4)).isoformat()
    pairs, _ = c.pairs(until_position=5)
    assert _ids(pairs) == {("v1", "v2"), ("v2", "v3")}
    with pytest.raises(ValueError):
        c.cut_position(1.5)


def test_same_texts_dropped_and_same_pairs_merged_across_users() -> None:
    log = _Log().ev("u1", "v5").ev("u1", "v6")  # two videos with one text
    log.ev("u2", "v2").ev("u2", "v1").ev("u3", "v1").ev("u3", "v2")
    pairs, report = log.collector(window=1).pairs()
    assert report.same_text == 1
    assert [(p.a, p.b, p.users) for p in pairs] == [("v1", "v2", 2)]


def test_cap_per_item_keeps_the_pairs_most_users_share() -> None:
    log = _Log()
    for u in ("a", "b", "c"):
        log.ev(u, "v1").ev(u, "v2")  # v1-v2 three times
    log.ev("d", "v1").ev("d", "v3").ev("e", "v1").ev("e", "v4")
    c = log.collector(window=1)
    capped, report = c.pairs(max_per_item=1)
    assert [(p.a, p.b, p.users) for p in capped] == [("v1", "v2", 3)]
    assert report.capped == 2
    assert len(c.pairs(max_per_item=3)[0]) == 3


def test_pairs_are_shuffled_deterministically_by_seed() -> None:
    log = _Log()
    for u in range(30):
        for v in ("v1", "v2", "v3", "v4")[u % 4 :] + ("v1", "v2", "v3", "v4")[: u % 4]:
            log.ev(f"u{u}", v)
    c = log.collector(window=2)
    orders = {s: [(p.a, p.b) for p in c.pairs(seed=s)[0]] for s in range(5)}
    assert [(p.a, p.b) for p in c.pairs(seed=3)[0]] == orders[3]
    assert len({tuple(o) for o in orders.values()}) > 1
    assert all(sorted(o) == sorted(orders[0]) for o in orders.values())


def test_loss_masks_a_repeated_video_instead_of_pushing_it_away() -> None:
    import torch

    rng = np.random.default_rng(0)
    v = torch.nn.functional.normalize(torch.tensor(rng.normal(size=(3, 8)), dtype=torch.float32))
    a = v[[0, 1, 2]]
    b = v[[1, 1, 0]]  # rows 0 and 1 both have video 1 as their positive
    a_ids, b_ids = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 0])
    masked = contrastive_loss(a, b, a_ids, b_ids, scale=20.0)
    unmasked = contrastive_loss(a, b, torch.tensor([10, 11, 12]), torch.tensor([13, 14, 15]), 20.0)
    assert float(masked) < float(unmasked)


def test_cli_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit, match="no such event log"):
        main(["finetune", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m")])
    log = tmp_path / "log.jsonl"
    write_log(log, _Log().ev("u1", "v1").msgs)  # one view: no pair
    with pytest.raises(SystemExit, match="too few training pairs"):
        main(["finetune", str(log), "--out", str(tmp_path / "m"), "--quiet"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(SystemExit, match="not empty"):
        main(["finetune", str(log), "--out", str(tmp_path / "full")])
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="cannot write to --out|is a file"):
        main(["finetune", str(log), "--out", str(tmp_path / "file" / "sub")])
    with pytest.raises(SystemExit, match="until-fraction"):
        main(["finetune", str(log), "--out", str(tmp_path / "m"), "--until-fraction", "0"])


@pytest.mark.slow  # loads the transformer (about 10 s on 2 cores)
def test_tiny_finetune_saves_a_loadable_encoder_that_pulls_pairs_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.encoder import load_encoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EncoderSettings, EngineSettings, IndexSettings

    texts = [
        ("Quantum chromodynamics lecture", "Grandma's apple pie"),
        ("Deep sea fishing trip", "Learn Python decorators"),
        ("Tax return walkthrough", "Funny cats compilation"),
        ("Medieval castle tour", "Jazz piano for beginners"),
    ]
    pairs = [Pair(f"a{i}", f"b{i}", x, y) for i, (x, y) in enumerate(texts)]

    def cosines(model_path: str | None) -> np.ndarray:
        enc = load_encoder(EncoderSettings(model_path=model_path, threads=2))
        va = enc.encode_many([x for x, _ in texts])
        vb = enc.encode_many([y for _, y in texts])
        return (va * vb).sum(axis=1)

    before = cosines(None)
    out = tmp_path / "tuned-minilm"
    settings = TrainSettings(
        batch_size=4, lr=1e-4, warmup_steps=1, max_steps=6, minutes=None, epochs=10
    )
    result = finetune(pairs, out, settings, meta={"log": "hand-made"})
    assert result.steps == 6 and result.loss_last is not None

    enc = load_encoder(EncoderSettings(model_path=str(out)))
    assert enc.name == "tuned-minilm" and enc.dim == 384
    after = cosines(str(out))
    assert (after > before).all(), (before, after)
    meta = json.loads((out / META_FILE).read_text())
    assert meta["log"] == "hand-made" and meta["result"]["steps"] == 6

    # the environment variable is how a worker gets it; its lists name it
    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", str(out))
    env_enc = load_encoder()
    np.testing.assert_allclose(env_enc.encode_many([texts[0][0]]), enc.encode_many([texts[0][0]]))
    engine = Engine(EngineSettings(k=3), env_enc, VideoIndex(IndexSettings(path=None), dim=384))
    log = _Log().ev("u1", "v1").ev("u1", "v2")
    engine.on_videos([m for m in log.msgs if isinstance(m, VideoPublished)])
    recs = [engine.on_event(m) for m in log.msgs if isinstance(m, UserEvent)]
    assert recs[-1] is not None and recs[-1].model["encoder"] == "tuned-minilm"
    assert recs[-1].items
