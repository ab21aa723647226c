"""The next-video transformer (workers/sequential.py) alone and inside the engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from schemas import ForgetUser, Recommendations, UserEvent, VideoPublished, decode
from workers.encoder import HashingEncoder
from workers.engine import Engine
from workers.inprocess import drive
from workers.ranker import FEATURES
from workers.sequential import SequentialModel
from workers.settings import EngineSettings

T0 = datetime(2026, 3, 1, tzinfo=UTC)
N_ITEMS = 60


def unit_rows(rng: np.random.Generator, n: int, dim: int = 32) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chain(rng: np.random.Generator, length: int = 12) -> list[int]:
    """The planted pattern: after video i comes video i + 1 (mod the catalogue)."""
    start = int(rng.integers(0, N_ITEMS))
    return [(start + j) % N_ITEMS for j in range(length)]


def model(**kw: object) -> SequentialModel:
    args = {"dim": 32, "max_len": 12, "dropout": 0.0, "lr": 5e-3, "batch": 32, "seed": 1}
    return SequentialModel(32, **{**args, **kw})  # type: ignore[arg-type]


def train(m: SequentialModel, vectors: np.ndarray, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    has = np.ones(len(vectors), dtype=bool)
    for _ in range(steps):
        m.step([chain(rng) for _ in range(m.batch)], vectors, has)


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_it_learns_a_planted_next_item_pattern(loss: str) -> None:
    vectors = unit_rows(np.random.default_rng(0), N_ITEMS)
    has = np.ones(N_ITEMS, dtype=bool)
    m = model(loss=loss, negatives=20)
    queries = [[i, i + 1, i + 2] for i in range(0, 50, 5)]
    before = m.score_many(queries, vectors, has).argmax(axis=1)
    train(m, vectors, 120)
    top = m.score_many(queries, vectors, has).argmax(axis=1)
    want = np.array([q[-1] + 1 for q in queries])
    assert (top == want).mean() >= 0.9
    assert (before == want).mean() < 0.5  # it was learned, not there from the start


def test_a_new_video_with_content_is_scored_through_its_content_alone() -> None:
    """Two clusters of videos; users stay in one. A video nobody has watched has a zero id
    embedding, yet its content puts it ahead of an equally new video of the other cluster."""
    rng = np.random.default_rng(3)
    centres = unit_rows(rng, 2)
    n = 42  # 0..19: cluster 0, 20..39: cluster 1, 40: new in cluster 0, 41: new in cluster 1
    cluster = np.array([0] * 20 + [1] * 20 + [0, 1])
    vectors = centres[cluster] + 0.3 * unit_rows(rng, n)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    has = np.ones(n, dtype=bool)
    m = model(max_len=8)
    for _ in range(80):
        seqs = [list(rng.choice(20, 8, replace=False) + 20 * (u % 2)) for u in range(32)]
        m.step(seqs, vectors, has)
    assert not m.known[40] and not m.known[41]
    assert float(m.net.ids.detach()[40:42].abs().sum()) == 0.0
    s = m.score_many([[0, 5, 7, 3], [22, 30, 25, 21]], vectors, has)
    assert s[0, 40] > s[0, 41] + 1.0
    assert s[1, 41] > s[1, 40] + 1.0
    # above every watched video of the other cluster, whose id embeddings were learned
    assert s[0, 40] > s[0, 20:40].max() and s[1, 41] > s[1, 0:20].max()


def test_a_snapshot_gives_identical_scores_and_identical_further_training() -> None:
    vectors = unit_rows(np.random.default_rng(0), N_ITEMS)
    has = np.ones(N_ITEMS, dtype=bool)
    m = model()
    train(m, vectors, 15)
    ids = [f"v{i}" for i in range(N_ITEMS)]
    state = json.loads(json.dumps(m.to_state(ids), default=lambda a: a.tolist()))
    copy = SequentialModel.from_state(state)
    q = [[3, 4, 5], [10], [50, 51, 52, 53]]
    assert np.array_equal(copy.score_many(q, vectors, has), m.score_many(q, vectors, has))
    batch = [chain(np.random.default_rng(9)) for _ in range(8)]
    assert copy.step(batch, vectors, has) == m.step(batch, vectors, has)
    assert np.array_equal(copy.score_many(q, vectors, has), m.score_many(q, vectors, has))


def test_a_snapshot_follows_videos_to_other_catalogue_indices() -> None:
    vectors = unit_rows(np.random.default_rng(0), N_ITEMS)
    has = np.ones(N_ITEMS, dtype=bool)
    m = model()
    train(m, vectors, 15)
    order = np.random.default_rng(5).permutation(N_ITEMS)  # new index of old video i
    moved = SequentialModel.from_state(
        m.to_state([f"v{i}" for i in range(N_ITEMS)]), lambda vid: int(order[int(vid[1:])])
    )
    new_vectors = np.zeros_like(vectors)
    new_vectors[order] = vectors
    q = [[3, 4, 5], [20, 21]]
    want = m.score_many(q, vectors, has)
    got = moved.score_many([[int(order[i]) for i in s] for s in q], new_vectors, has)
    assert np.allclose(got[:, order], want, atol=1e-5)


# -- in the engine ------------------------------------------------------------------------------
def planted_log(n_users: int = 16, per_user: int = 14) -> list:
    """Each user walks the chain v(i) -> v(i+1); the videos' titles carry no order."""
    msgs: list = [
        VideoPublished(video_id=f"v{i}", title=f"video {i} about topic {i % 5}", published_at=T0)
        for i in range(N_ITEMS)
    ]
    n = 0
    for step in range(per_user):
        for u in range(n_users):
            n += 1
            msgs.append(
                UserEvent(
                    event_id=f"e{n}",
                    user_id=f"u{u}",
                    video_id=f"v{(u * 11 + step) % N_ITEMS}",
                    type="watch",
                    ts=T0 + timedelta(minutes=n),
                )
            )
    return msgs


SEQ = {
    "k": 10,
    "seq_enabled": True,
    "seq_dim": 16,
    "seq_len": 10,
    "seq_batch": 8,
    "seq_train_every": 10,
    "seq_lr": 5e-3,
}


def seq_engine(**kw: object) -> Engine:
    return Engine(EngineSettings(**{**SEQ, **kw}), HashingEncoder(32))


def test_the_engine_trains_it_deterministically_in_a_replay() -> None:
    log = planted_log()
    lists = []
    engines = []
    for _ in range(2):
        eng = seq_engine()
        got: list[list[str]] = []
        drive(log, eng, on_recommendations=lambda r, got=got: got.append(r.to_json()))
        lists.append(got)
        engines.append(eng)
    a, b = engines
    assert a.seq is not None and b.seq is not None
    # a round every 10 events; the first, before any user has two videos, has nothing to learn
    assert a.seq.steps == b.seq.steps == (16 * 14) // 10 - 1
    sb = b.seq.net.state_dict()
    for name, pa in a.seq.net.state_dict().items():
        assert torch_equal(pa, sb[name]), name

    def strip(js: bytes) -> dict:
        d = json.loads(js)
        d.pop("generated_at"), d.pop("latency_ms")
        return d

    assert [strip(x) for x in lists[0]] == [strip(x) for x in lists[1]]


def torch_equal(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return bool(torch.equal(a, b))


def test_with_the_setting_on_the_engine_publishes_valid_lists_with_a_seq_score() -> None:
    eng = seq_engine()
    out: list[Recommendations] = []
    drive(planted_log(), eng, on_recommendations=out.append)
    assert eng.seq is not None and eng.seq.steps > 0
    assert "seq" in eng.cfg.sources
    last = {r.user_id: r for r in out}  # each user's latest list, published after all they saw
    for recs in last.values():
        again = decode(recs.to_json())  # strict decode: the wire format is valid
        assert isinstance(again, Recommendations) and len(again.items) == 10
        assert all(it.sources.seq is not None for it in again.items)
        ids = [it.video_id for it in again.items]
        assert len(set(ids)) == len(ids)
        assert not set(ids) & set(eng.seen_of(recs.user_id))
    # the model's own candidates reach the list: its top pick for a user is a candidate
    user = out[-1].user_id
    scores = eng._seq_scores(user, eng.users[user])
    assert scores is not None and scores.shape == (len(eng.catalog),)


def test_with_the_setting_off_nothing_changes_on_the_wire() -> None:
    eng = Engine(EngineSettings(k=10), HashingEncoder(32))
    out: list[Recommendations] = []
    drive(planted_log(per_user=4), eng, on_recommendations=out.append)
    assert eng.seq is None and "seq" not in eng.cfg.sources
    assert b'"seq"' not in out[-1].to_json()
    assert eng.fusion.mask[FEATURES.index("seq")] == 0.0


def test_the_engine_snapshot_resumes_the_model() -> None:
    log = planted_log()
    eng = seq_engine()
    drive(log[:-40], eng)
    back = Engine.from_state(eng.to_state(), HashingEncoder(32))
    assert back.seq is not None and eng.seq is not None and back.seq.steps == eng.seq.steps
    rest: list[list[list[str]]] = [[], []]
    for e, got in zip((eng, back), rest, strict=True):
        for m in log[-40:]:
            recs = e.on_event(m)
            got.append([it.video_id for it in recs.items])
    assert rest[0] == rest[1]


def test_the_forget_receipt_says_what_happens_to_the_trained_weights() -> None:
    eng = seq_engine()
    drive(planted_log(), eng)
    assert "u3" in eng._seq_pool and "u3" in eng._seq_hidden
    receipt = eng.on_forget(ForgetUser(user_id="u3", ts=T0 + timedelta(days=1)))
    assert "u3" not in eng._seq_pool and "u3" not in eng._seq_hidden
    assert receipt.erased["seq_training_pool"] == 1 and receipt.erased["seq_user_state"] == 1
    line = next(k for k in receipt.kept if k.startswith("sequential model weights"))
    assert "cannot be subtracted" in line and f"{eng.seq.steps} steps" in line  # type: ignore[union-attr]
    off = Engine(EngineSettings(k=10), HashingEncoder(32))
    drive(planted_log(per_user=3), off)
    receipt = off.on_forget(ForgetUser(user_id="u3", ts=T0 + timedelta(days=1)))
    assert "seq_training_pool" not in receipt.erased
    assert not any("sequential" in k for k in receipt.kept)
