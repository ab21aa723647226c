"""Fine-tune the content encoder on co-watching: videos watched in sequence should embed close.

The stock all-MiniLM-L6-v2 knows what titles *say*; a platform's log knows which videos the same
people watch one after the other. Contrastive training on those pairs (each pair's other side is
the positive, the rest of the batch the negatives) moves the text space towards the behaviour
space, and that helps where behaviour cannot: a brand-new video has only its text.

``PairCollector`` reads a log (``learn_one`` per message) and turns it into training pairs, up to
a cut-off, so that an evaluation on the rest of the log has not been trained on; ``finetune``
trains on them and saves a Hugging Face folder that ``VIDREC_ENCODER_MODEL_PATH`` loads.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import EventType, UserEvent, VideoPublished
from workers.encoder import bundled_model_path, mean_pool

POSITIVE = frozenset(
    {EventType.PLAY, EventType.WATCH, EventType.COMPLETE, EventType.LIKE, EventType.SHARE}
)
# Files that make the folder a sentence-transformers model too (same mean pooling, no dense head).
_SENTENCE_TRANSFORMERS_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling",
)
META_FILE = "finetune.json"


@dataclass(frozen=True, slots=True)
class Pair:
    """Two videos one user watched close together; ``users`` is how many users did."""

    a: str
    b: str
    a_text: str
    b_text: str
    users: int = 1


@dataclass
class PairReport:
    """What ``PairCollector.pairs`` used and dropped, for the saved metadata and the CLI."""

    events: int = 0
    events_used: int = 0
    cut_position: int = 0
    cut_ts: str | None = None
    users: int = 0
    candidates: int = 0
    distinct: int = 0
    same_text: int = 0
    no_text: int = 0
    capped: int = 0
    pairs: int = 0


class PairCollector:
    """Collects each user's positive views in log order, and makes training pairs of them.

    Parameters
    ----------
    window
        A view pairs with the user's next ``window`` distinct videos: 1 is strict succession,
        a larger window also pairs near neighbours (more pairs, looser signal).

    Notes
    -----
    Only a user's first positive event on a video counts (a re-watch is not a new step in the
    sequence), the same targets as ``workers.evaluation``. Pairs are made by ``pairs``, after the
    whole log is read, because a cut-off given as a fraction needs the number of events.
    """

    def __init__(self, window: int = 2) -> None:
        if window < 1:
            raise ValueError("window must be >= 1")
        self.window = window
        self.texts: dict[str, str] = {}
        self.events = 0
        # (user event position, timestamp, user, video) of each first positive view
        self._views: list[tuple[int, float, str, str]] = []
        self._seen: set[tuple[str, str]] = set()
        self._ts: list[float] = []

    def learn_one(self, msg: object) -> None:
        """Take one message of a log; anything but a video or a user event is ignored."""
        if isinstance(msg, VideoPublished):
            self.texts[msg.video_id] = msg.text()
        elif isinstance(msg, UserEvent):
            pos = self.events
            self.events += 1
            ts = msg.ts.timestamp()
            self._ts.append(ts)
            if msg.type not in POSITIVE:
                return
            key = (msg.user_id, msg.video_id)
            if key in self._seen:
                return
            self._seen.add(key)
            self._views.append((pos, ts, msg.user_id, msg.video_id))

    def cut_position(
        self, until_fraction: float | None = None, until_ts: datetime | None = None
    ) -> int:
        """The number of leading user events a cut-off keeps (the stricter of the two given)."""
        cut = self.events
        if until_fraction is not None:
            if not 0.0 < until_fraction <= 1.0:
                raise ValueError("until_fraction must be in (0, 1]")
            cut = min(cut, int(self.events * until_fraction))
        if until_ts is not None:
            t = until_ts.timestamp()
            cut = min(cut, next((i for i, ts in enumerate(self._ts) if ts >= t), self.events))
        return cut

    def pairs(
        self,
        *,
        until_position: int | None = None,
        max_per_item: int = 32,
        seed: int = 0,
    ) -> tuple[list[Pair], PairReport]:
        """Training pairs from the views among the first ``until_position`` user events.

        Pairs of the same two videos from several users become one pair (an in-batch duplicate
        would be its own false negative), counted in ``users``. Each video then takes part in
        at most ``max_per_item`` pairs, the pairs most users share first, so that blockbusters,
        which follow everything, do not fill the training set. Pairs whose two texts are the
        same teach nothing and are dropped. The result is shuffled with ``seed``.
        """
        if max_per_item < 1:
            raise ValueError("max_per_item must be >= 1")
        cut = self.events if until_position is None else max(0, min(until_position, self.events))
        report = PairReport(events=self.events, events_used=cut, cut_position=cut)
        if cut < self.events:
            report.cut_ts = datetime.fromtimestamp(self._ts[cut], UTC).isoformat()

        sequences: dict[str, list[str]] = {}
        for pos, _ts, user, video in self._views:
            if pos >= cut:
                break
            sequences.setdefault(user, []).append(video)
        report.users = len(sequences)

        counts: Counter[tuple[str, str]] = Counter()
        for seq in sequences.values():
            for i, a in enumerate(seq):
                for b in seq[i + 1 : i + 1 + self.window]:
                    report.candidates += 1
                    ta, tb = self.texts.get(a), self.texts.get(b)
                    if ta is None or tb is None:
                        report.no_text += 1
                    elif ta == tb:
                        report.same_text += 1
                    else:
                        counts[(a, b) if a < b else (b, a)] += 1
        report.distinct = len(counts)

        rng = random.Random(seed)
        ranked = list(counts.items())
        ranked.sort()  # a fixed order before the seeded shuffle: dict order follows the log
        rng.shuffle(ranked)
        ranked.sort(key=lambda kv: -kv[1])  # stable: ties stay in shuffled order
        used: Counter[str] = Counter()
        out: list[Pair] = []
        for (a, b), n in ranked:
            if used[a] >= max_per_item or used[b] >= max_per_item:
                report.capped += 1
                continue
            used[a] += 1
            used[b] += 1
            out.append(Pair(a, b, self.texts[a], self.texts[b], n))
        rng.shuffle(out)
        report.pairs = len(out)
        return out, report


@dataclass
class TrainSettings:
    """Knobs of the contrastive fine-tuning; the defaults suit MiniLM on 2 CPU cores.

    ``scale`` is the inverse temperature of the softmax over cosine similarities (20 is a
    temperature of 0.05, the sentence-transformers default). ``freeze_embeddings`` keeps the
    word-piece table (half the model's weights) as it is: a few thousand pairs cannot teach it
    much, and leaving it out of the optimiser makes a step cheaper. The learning rate warms up
    linearly over ``warmup_steps`` and then stays: the run may end on its time budget, so no
    decay schedule could know where its end is.
    """

    batch_size: int = 32
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_steps: int = 30
    max_length: int = 64
    scale: float = 20.0
    freeze_embeddings: bool = True
    epochs: float = 1.0
    max_steps: int | None = None
    minutes: float | None = 8.0
    seed: int = 0
    threads: int = 2


@dataclass
class TrainResult:
    """What a run did; saved to ``finetune.json`` beside the model."""

    base: str
    pairs: int
    steps: int
    seconds: float
    stopped: str
    loss_first: float | None = None
    loss_last: float | None = None
    losses: list[float] = field(default_factory=list)


def planned_steps(n_pairs: int, settings: TrainSettings) -> int:
    """Steps the run takes unless its time budget ends it first."""
    per_epoch = n_pairs // settings.batch_size + (1 if n_pairs % settings.batch_size >= 2 else 0)
    steps = math.ceil(per_epoch * settings.epochs)
    return min(steps, settings.max_steps) if settings.max_steps is not None else steps


def _batches(pairs: Sequence[Pair], settings: TrainSettings) -> list[list[Pair]]:
    # epoch after epoch, each shuffled anew; a last batch of one has no negative and is dropped
    rng = random.Random(settings.seed)
    need = planned_steps(len(pairs), settings)
    out: list[list[Pair]] = []
    order = list(pairs)
    while len(out) < need:
        bs = settings.batch_size
        for i in range(0, len(order), bs):
            batch = order[i : i + bs]
            if len(batch) >= 2 and len(out) < need:
                out.append(batch)
        rng.shuffle(order)
    return out


def contrastive_loss(a: Any, b: Any, a_ids: Any, b_ids: Any, scale: float) -> Any:
    """Symmetric in-batch InfoNCE over unit vectors ``a`` and ``b`` (row i of each is a pair).

    A negative that is the same video as the row's positive or anchor (a blockbuster in two pairs
    of one batch) is masked out rather than pushed away.
    """
    import torch

    sim = a @ b.T * scale
    eye = torch.eye(len(a), dtype=torch.bool)
    # sim[i, j] compares a_i with b_j; b_j is a false negative if it is b_i's or a_i's video
    false_ab = (b_ids[None, :] == b_ids[:, None]) | (b_ids[None, :] == a_ids[:, None])
    false_ba = (a_ids[None, :] == a_ids[:, None]) | (a_ids[None, :] == b_ids[:, None])
    labels = torch.arange(len(a))
    neg_inf = torch.finfo(sim.dtype).min
    loss_ab = torch.nn.functional.cross_entropy(sim.masked_fill(false_ab & ~eye, neg_inf), labels)
    loss_ba = torch.nn.functional.cross_entropy(sim.T.masked_fill(false_ba & ~eye, neg_inf), labels)
    return (loss_ab + loss_ba) / 2


def finetune(
    pairs: Sequence[Pair],
    out: str | Path,
    settings: TrainSettings | None = None,
    *,
    base: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the encoder at ``base`` (default: the bundled MiniLM) on ``pairs``, save it to ``out``.

    The folder holds the model and tokenizer (``save_pretrained``), the sentence-transformers
    files of the base if it had them, and ``finetune.json``: ``meta`` (what the caller wants
    recorded, e.g. the log and its cut-off), the settings and the ``TrainResult``. The same
    pairs, settings and ``max_steps`` give the same weights; a run cut by ``minutes`` stops
    wherever the clock says. ``on_step(step, loss)`` is called after each step.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    settings = settings or TrainSettings()
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs to train on, got {len(pairs)}")
    base_path = Path(base) if base else bundled_model_path()
    out = Path(out)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)

    tokenizer = AutoTokenizer.from_pretrained(str(base_path), local_files_only=True)
    model = AutoModel.from_pretrained(str(base_path), local_files_only=True).float()
    model.train()
    if settings.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = max(1, settings.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: min(1.0, (s + 1) / warmup))
    ids: dict[str, int] = {}

    def embed(texts: list[str]) -> Any:
        batch = tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=settings.max_length,
            return_tensors="pt",
        )
        return mean_pool(model(**batch).last_hidden_state, batch["attention_mask"])

    result = TrainResult(str(base_path), len(pairs), 0, 0.0, "planned steps")
    deadline = None if settings.minutes is None else time.monotonic() + settings.minutes * 60
    t0 = time.monotonic()
    for batch in _batches(pairs, settings):
        if deadline is not None and time.monotonic() >= deadline:
            result.stopped = "time budget"
            break
        a_ids = torch.tensor([ids.setdefault(p.a, len(ids)) for p in batch])
        b_ids = torch.tensor([ids.setdefault(p.b, len(ids)) for p in batch])
        # one forward pass for both sides, so both get the same dropout regime and padding
        vecs = embed([p.a_text for p in batch] + [p.b_text for p in batch])
        loss = contrastive_loss(
            vecs[: len(batch)], vecs[len(batch) :], a_ids, b_ids, settings.scale
        )
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        sched.step()
        result.steps += 1
        value = float(loss.detach())
        result.losses.append(round(value, 4))
        if on_step is not None:
            on_step(result.steps, value)
    result.seconds = round(time.monotonic() - t0, 1)
    if result.losses:
        k = min(20, len(result.losses))
        result.loss_first = round(sum(result.losses[:k]) / k, 4)
        result.loss_last = round(sum(result.losses[-k:]) / k, 4)

    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    for name in _SENTENCE_TRANSFORMERS_FILES:
        src = base_path / name
        if src.is_dir():
            shutil.copytree(src, out / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, out / name)
    record = {**(meta or {}), "settings": asdict(settings), "result": asdict(result)}
    (out / META_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return result
