"""The content encoders: all-MiniLM-L6-v2 (fp32 and int8) and the model-free hashing stand-in."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.encoder import (
    DEFAULT_MODEL_NAME,
    Encoder,
    HashingEncoder,
    TextEncoder,
    bundled_model_path,
    load_encoder,
)
from workers.settings import EncoderSettings

pytestmark = pytest.mark.slow


def make_titles(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    hooks = ["", "how to", "best", "easy", "top 10", "why", "my first", "ultimate"]
    topics = (
        "pasta football guitar python yoga minecraft cats tokyo piano chess coffee jazz".split()
    )
    kinds = ["recipe", "highlights", "tutorial", "review", "vlog", "challenge", "tips"]
    kinds += ["for beginners", "explained", "unboxing", "in 10 minutes", "live"]
    return [
        f"{rng.choice(hooks)} {rng.choice(topics)} {rng.choice(kinds)}".strip() for _ in range(n)
    ]


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


@pytest.fixture(scope="module")
def fp32() -> Encoder:
    # batch 4 so that a dozen texts already span several batches
    return Encoder(EncoderSettings(batch_size=4, device="cpu"))


@pytest.fixture(scope="module")
def int8() -> Encoder:
    return Encoder(EncoderSettings(quantize_int8=True, device="cpu"))


def test_shape_dtype_and_unit_norm(fp32: Encoder) -> None:
    vecs = fp32.encode_many(make_titles(10))
    assert isinstance(fp32, TextEncoder)
    assert fp32.dim == 384 and fp32.name == DEFAULT_MODEL_NAME
    assert vecs.shape == (10, 384) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_empty_list(fp32: Encoder) -> None:
    out = fp32.encode_many([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_blank_and_very_long_texts_encode(fp32: Encoder) -> None:
    long = " ".join(["cooking pasta with fresh tomatoes"] * 400)  # far past 256 tokens
    vecs = fp32.encode_many(["", "   ", "\n\t", long])
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-5)  # both are just [CLS] [SEP]


def test_same_text_same_vector(fp32: Encoder) -> None:
    a = fp32.encode_many(["street food tour in tokyo", "street food tour in tokyo"])
    b = fp32.encode_many(["street food tour in tokyo"])
    np.testing.assert_allclose(a[0], a[1], atol=1e-6)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_related_titles_are_closer_than_unrelated(fp32: Encoder) -> None:
    pasta, spaghetti, football = fp32.encode_many(
        ["easy pasta recipe", "quick spaghetti dinner", "football match highlights"]
    )
    assert cos(pasta, spaghetti) > cos(pasta, football) + 0.2
    assert cos(pasta, spaghetti) > cos(spaghetti, football) + 0.2


def test_batch_equals_one_by_one(fp32: Encoder) -> None:
    texts = make_titles(12) + ["a much longer title about learning jazz piano chords from scratch"]
    batched = fp32.encode_many(texts)
    single = np.stack([fp32.encode_many([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_length_sorting_restores_input_order(fp32: Encoder) -> None:
    texts = ["a " * 60 + "long one", "mid length title here", "x", "chess", "b " * 30 + "longish"]
    vecs = fp32.encode_many(texts)
    perm = [3, 0, 4, 2, 1]
    np.testing.assert_allclose(fp32.encode_many([texts[i] for i in perm]), vecs[perm], atol=1e-5)
    # distinct texts give distinct rows, so a row swap would have shown up above
    assert len({tuple(np.round(v, 4)) for v in vecs}) == len(texts)


def test_int8_stays_close_to_fp32(fp32: Encoder, int8: Encoder) -> None:
    titles = make_titles(50, seed=1)
    sims = (fp32.encode_many(titles) * int8.encode_many(titles)).sum(axis=1)
    assert int8.name == DEFAULT_MODEL_NAME + "-int8"
    assert sims.mean() >= 0.97
    assert sims.min() >= 0.9


def test_int8_refuses_a_gpu_device() -> None:
    with pytest.raises(ValueError, match="CPU only"):
        Encoder(EncoderSettings(quantize_int8=True, device="cuda"))


def test_model_path_override_loads_any_local_folder() -> None:
    enc = Encoder(EncoderSettings(model_path=str(bundled_model_path()), device="cpu"))
    assert enc.name == "model" and enc.dim == 384
    assert enc.encode_many(["hello"]).shape == (1, 384)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.text(max_size=80), min_size=1, max_size=4))
def test_any_text_gives_finite_unit_rows(fp32: Encoder, texts: list[str]) -> None:
    vecs = fp32.encode_many(texts)
    assert vecs.shape == (len(texts), 384) and np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


# --- HashingEncoder: the model-free stand-in other components test with ---


def test_hashing_is_deterministic_and_seeded() -> None:
    texts = ["Easy pasta recipe", "football highlights", ""]
    a = HashingEncoder().encode_many(texts)
    np.testing.assert_array_equal(a, HashingEncoder().encode_many(texts))
    assert not np.allclose(a[0], HashingEncoder(seed=1).encode_many(texts)[0])
    assert isinstance(HashingEncoder(), TextEncoder)
    assert HashingEncoder(dim=64).encode_many([]).shape == (0, 64)


def test_hashing_shared_words_score_higher() -> None:
    pasta, pasta2, football = HashingEncoder().encode_many(
        ["easy pasta recipe", "pasta recipe for dinner", "football match highlights"]
    )
    assert cos(pasta, pasta2) > cos(pasta, football) + 0.3
    assert cos(pasta, pasta) == pytest.approx(1.0, abs=1e-6)


def test_hashing_ignores_case_and_punctuation() -> None:
    a, b = HashingEncoder().encode_many(["Easy PASTA, recipe!", "easy pasta recipe"])
    np.testing.assert_array_equal(a, b)


@given(st.lists(st.text(max_size=200), max_size=5), st.integers(1, 512))
def test_hashing_rows_are_unit_norm_for_any_text(texts: list[str], dim: int) -> None:
    vecs = HashingEncoder(dim=dim).encode_many(texts)
    assert vecs.shape == (len(texts), dim) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_load_encoder_picks_hashing() -> None:
    enc = load_encoder(EncoderSettings(model_path="hashing"))
    assert isinstance(enc, HashingEncoder) and enc.dim == 384
