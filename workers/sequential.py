"""A next-video transformer over content-aware item vectors, trained online from user sequences.

A small causal transformer (SASRec's shape) reads a user's last ``max_len`` videos, oldest
first, and scores every video of the catalogue as the next one. A video's representation is
its content vector (the encoder's, which the engine already holds) projected to ``dim``, plus a
learned id embedding that stays zero until the video has been watched: a video published a
minute ago is already represented through its content, and behaviour refines it as it is
watched. Input and output representations are shared, as in SASRec.

Training is online and separate from the event path: ``SequentialModel.step`` takes a batch of
user sequences and runs one optimiser step on the *training* network, then swaps in a copy of
it as the *serving* network (one reference assignment, so a reader never sees half-updated
weights). Scoring reads only the serving network. The in-process replay calls ``step``
synchronously every N events, which keeps a replay deterministic; a worker can call the same
``step`` from a background thread. Torch threads are capped during ``step`` and scoring
(``threads``), so training uses at most that many cores.

The model holds no per-user state: a user is only ever a sequence passed in.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import nn


class SeqNet(nn.Module):
    """The network: content projection + id embedding, positions, causal transformer."""

    def __init__(
        self, content_dim: int, dim: int, layers: int, heads: int, max_len: int, dropout: float
    ) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(content_dim, dim, bias=False)
        self.ids = nn.Parameter(torch.zeros(0, dim))  # grown as videos arrive; new rows zero
        self.pos = nn.Embedding(max_len, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout, batch_first=True, norm_first=True
        )
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.register_buffer(
            "causal", nn.Transformer.generate_square_subsequent_mask(max_len), persistent=False
        )

    def reps_of(
        self, rows: torch.Tensor, content: torch.Tensor, has: torch.Tensor, known: torch.Tensor
    ) -> torch.Tensor:
        """Representations of the catalogue rows ``rows`` (all within the id table)."""
        return self.proj(content) * has[:, None] + self.ids[rows] * known[:, None]

    def hidden(self, seqs: torch.Tensor, reps: torch.Tensor) -> torch.Tensor:
        """(B, L, dim) states; ``seqs`` is (B, L) item indices, left-padded with -1."""
        b, length = seqs.shape
        pad = seqs < 0
        x = reps[seqs.clamp(min=0)] * math.sqrt(self.dim)
        x = x + self.pos.weight[-length:][None]
        x = self.drop(x.masked_fill(pad[..., None], 0.0))
        h = self.enc(x, mask=self.causal[-length:, -length:], is_causal=True)
        return self.norm(h)


@contextmanager
def _threads(n: int) -> Any:
    """Cap torch's intra-op threads for a block (process-wide while it runs)."""
    prev = torch.get_num_threads()
    if n > 0 and n != prev:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n > 0 and n != prev:
            torch.set_num_threads(prev)


class SequentialModel:
    """The trained next-video model: ``step`` learns, ``score_many`` scores, snapshots.

    Items are the engine's catalogue indices; the content matrix and its ``has_content`` mask
    are passed in by the caller (the engine's catalogue), so the model never copies the
    catalogue. Scores are log-lifts over a uniform pick, ``log p(item) + log n``: 0 for a user
    the model cannot tell apart from chance, comparable between users, which is what a fusion
    feature needs.

    Parameters
    ----------
    loss
        ``"full"``: cross-entropy over the whole catalogue; ``"sampled"``: over the batch's
        targets plus ``negatives`` videos drawn uniformly (cheaper on a large catalogue).
    threads
        Torch threads while training or scoring (the issue's cap: one core).
    """

    def __init__(
        self,
        content_dim: int,
        *,
        dim: int = 64,
        layers: int = 2,
        heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.1,
        lr: float = 1e-3,
        l2: float = 0.0,
        batch: int = 32,
        loss: Literal["full", "sampled"] = "full",
        negatives: int = 256,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        self.config = {
            "content_dim": content_dim,
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "max_len": max_len,
            "dropout": dropout,
            "lr": lr,
            "l2": l2,
            "batch": batch,
            "loss": loss,
            "negatives": negatives,
            "threads": threads,
            "seed": seed,
        }
        self.max_len = max_len
        self.batch = batch
        self.loss = loss
        self.negatives = negatives
        self.threads = threads
        self.seed = seed
        with _threads(threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = SeqNet(content_dim, dim, layers, heads, max_len, dropout)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=l2)
        self.known = np.zeros(0, dtype=bool)  # videos already watched: their id rows count
        self.steps = 0
        self.train_s = 0.0  # wall time spent in ``step`` (for the cost report)
        self.serving = self._frozen()
        self._reps: tuple[int, int, int, torch.Tensor] | None = None  # (version, n, token, reps)
        self.last_loss = float("nan")

    # -- training ---------------------------------------------------------------------------
    def step(
        self,
        sequences: Sequence[Sequence[int]],
        vectors: np.ndarray,
        has_content: np.ndarray,
    ) -> float | None:
        """One optimiser step on ``sequences`` (item indices, oldest first), then publish.

        Every position of a sequence predicts the next item (SASRec's objective). Returns the
        loss, or ``None`` when no sequence has two items. Deterministic for the same inputs
        and step count: dropout and the negatives are seeded by ``(seed, steps)``.
        """
        t0 = time.perf_counter()
        seqs = [list(s[-(self.max_len + 1) :]) for s in sequences if len(s) >= 2]
        if not seqs:
            return None
        n = len(vectors)
        self._grow(n)
        for s in seqs:
            self.known[s] = True
        length = max(len(s) for s in seqs) - 1
        inp = np.full((len(seqs), length), -1, dtype=np.int64)
        tgt = np.full((len(seqs), length), -1, dtype=np.int64)
        for r, s in enumerate(seqs):
            m = len(s) - 1
            inp[r, length - m :] = s[:-1]
            tgt[r, length - m :] = s[1:]
        if self.loss == "sampled" and self.negatives < n:
            # only the rows a step touches: its sequences' videos and the sampled negatives,
            # so a step costs the same on any catalogue
            negs = np.random.default_rng([self.seed, self.steps]).integers(0, n, self.negatives)
            rows = np.unique(np.concatenate([inp[inp >= 0], tgt[tgt >= 0], negs]))
            inp = np.where(inp >= 0, np.searchsorted(rows, inp), -1)
            tgt = np.where(tgt >= 0, np.searchsorted(rows, tgt), -1)
        else:
            rows = np.arange(n)
        with _threads(self.threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self.steps)
            self.net.train()
            reps = self.net.reps_of(
                torch.from_numpy(rows),
                torch.from_numpy(np.ascontiguousarray(vectors[rows], dtype=np.float32)),
                torch.from_numpy(has_content[rows].astype(np.float32)),
                torch.from_numpy(self.known[rows].astype(np.float32)),
            )
            h = self.net.hidden(torch.from_numpy(inp), reps)
            t = torch.from_numpy(tgt)
            valid = t >= 0
            logits = h[valid] @ reps.T
            loss = nn.functional.cross_entropy(logits, t[valid])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.steps += 1
        self.last_loss = float(loss.detach())
        self.serving = self._frozen()  # the atomic swap: readers hold the old one or this one
        self.train_s += time.perf_counter() - t0
        return self.last_loss

    def _frozen(self) -> SeqNet:
        net = copy.deepcopy(self.net)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        net.version = self.steps  # type: ignore[attr-defined]
        net.known = self.known.copy()  # type: ignore[attr-defined]
        return net

    def _grow(self, n: int) -> None:
        """Make room for ``n`` videos' id rows (zero), carrying the optimiser's moments over."""
        if len(self.known) < n:
            self.known = np.concatenate([self.known, np.zeros(n - len(self.known), bool)])
        old = self.net.ids
        if old.shape[0] >= n:
            return
        cap = max(n, 2 * old.shape[0], 256)
        new = nn.Parameter(torch.zeros(cap, old.shape[1]))
        new.data[: old.shape[0]] = old.data
        state = self.opt.state.pop(old, None)
        self.net.ids = new
        for g in self.opt.param_groups:
            g["params"] = [new if p is old else p for p in g["params"]]
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                grown = torch.zeros_like(new.data)
                grown[: old.shape[0]] = state[key]
                state[key] = grown
            self.opt.state[new] = state

    # -- scoring (reads the serving network, never creates state) ---------------------------
    def score_many(
        self,
        sequences: Sequence[Sequence[int]],
        vectors: np.ndarray,
        has_content: np.ndarray,
        items: np.ndarray | None = None,
        token: int = 0,
    ) -> np.ndarray:
        """Log-lift scores, (users, items) or (users, catalogue) when ``items`` is None.

        ``sequences`` are each user's recent items, oldest first (an empty one scores 0
        everywhere). ``token`` names the version of the catalogue's content vectors: the item
        representations are kept until it or the weights change (new videos only add rows), so
        scoring costs one forward pass of the users' sequences and one (catalogue x dim)
        product. ``hidden_many`` and ``scores_from`` are its two halves, for a caller that
        keeps a user's state between events.
        """
        n = len(vectors)
        width = n if items is None else len(items)
        out = np.zeros((len(sequences), width), dtype=np.float32)
        rows = [r for r, s in enumerate(sequences) if len(s)]
        if n == 0 or not rows:
            return out
        net = self.serving
        h = self.hidden_many([sequences[r] for r in rows], vectors, has_content, token, net)
        lift = self.scores_from(h, vectors, has_content, token, net)
        out[rows] = lift if items is None else lift[:, items]
        return out

    def hidden_many(
        self,
        sequences: Sequence[Sequence[int]],
        vectors: np.ndarray,
        has_content: np.ndarray,
        token: int = 0,
        net: SeqNet | None = None,
    ) -> np.ndarray:
        """(users, dim): the state after each (non-empty) sequence, under the serving weights."""
        net = net or self.serving
        with _threads(self.threads), torch.inference_mode():
            reps = self._item_reps(net, vectors, has_content, token)
            length = min(self.max_len, max(len(s) for s in sequences))
            inp = np.full((len(sequences), length), -1, dtype=np.int64)
            for j, seq in enumerate(sequences):
                s = list(seq)[-length:]
                inp[j, length - len(s) :] = s
            return net.hidden(torch.from_numpy(inp), reps)[:, -1].numpy()

    def scores_from(
        self,
        hidden: np.ndarray,
        vectors: np.ndarray,
        has_content: np.ndarray,
        token: int = 0,
        net: SeqNet | None = None,
    ) -> np.ndarray:
        """(users, catalogue) log-lifts from states ``hidden_many`` returned."""
        net = net or self.serving
        n = len(vectors)
        with _threads(self.threads), torch.inference_mode():
            reps = self._item_reps(net, vectors, has_content, token)
            logits = torch.from_numpy(hidden) @ reps.T
            lift = logits - torch.logsumexp(logits, dim=1, keepdim=True) + math.log(n)
            return lift.numpy()

    @property
    def version(self) -> int:
        """The serving weights' version (their step count): a state from older ones is stale."""
        return self.serving.version  # type: ignore[attr-defined]

    def _item_reps(
        self, net: SeqNet, vectors: np.ndarray, has_content: np.ndarray, token: int
    ) -> torch.Tensor:
        """The serving weights' item representations; ``token`` changes when a video's content
        does. New videos only append rows, so a growing catalogue costs only its new rows."""
        n = len(vectors)
        version = net.version  # type: ignore[attr-defined]
        c = self._reps
        if c is not None and c[0] == version and c[2] == token and c[1] <= n:
            if c[1] == n:
                return c[3]
            start, head = c[1], [c[3]]
        else:
            start, head = 0, []
        k = net.known  # type: ignore[attr-defined]
        known = torch.from_numpy(k[start:n].astype(np.float32))  # rows past it: not watched
        rows = net.proj(torch.from_numpy(np.ascontiguousarray(vectors[start:n], np.float32)))
        rows = rows * torch.from_numpy(has_content[start:n].astype(np.float32))[:, None]
        m = min(len(known), max(0, net.ids.shape[0] - start))
        if m:
            rows[:m] += net.ids[start : start + m] * known[:m, None]
        reps = torch.cat([*head, rows]) if head else rows
        self._reps = (version, n, token, reps)
        return reps

    # -- snapshots ----------------------------------------------------------------------------
    def to_state(self, ids: Sequence[str]) -> dict[str, Any]:
        """Weights, optimiser and step count; id rows named by video id (``ids``: the
        catalogue's id list), since catalogue indices are local to one engine."""
        n = min(len(ids), self.net.ids.shape[0])
        net = {k: v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        net["ids"] = net["ids"][:n]
        opt = self.opt.state_dict()
        names = [k for k, _ in self.net.named_parameters()]
        moments = {}
        for i, name in enumerate(names):
            st = opt["state"].get(i)
            if st:
                moments[name] = {
                    "step": float(st["step"]),
                    "exp_avg": st["exp_avg"].numpy().copy(),
                    "exp_avg_sq": st["exp_avg_sq"].numpy().copy(),
                }
                if name == "ids":
                    moments[name]["exp_avg"] = moments[name]["exp_avg"][:n]
                    moments[name]["exp_avg_sq"] = moments[name]["exp_avg_sq"][:n]
        return {
            "config": dict(self.config),
            "steps": self.steps,
            "ids": list(ids[:n]),
            "known": self.known[:n].copy(),
            "net": net,
            "moments": moments,
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], index_of: Callable[[str], int] | None = None
    ) -> SequentialModel:
        """Rebuild a model; ``index_of(video_id)`` maps the saved ids to this engine's
        catalogue indices (identity when omitted)."""
        obj = cls(**state["config"])
        saved = state["ids"]
        rows = (
            np.arange(len(saved))
            if index_of is None
            else np.array([index_of(v) for v in saved], dtype=np.int64)
        )
        size = int(rows.max()) + 1 if len(rows) else 0
        obj._grow(size)

        def tensor(a: Any) -> torch.Tensor:  # arrays, or lists from a JSON snapshot
            return torch.tensor(np.asarray(a, dtype=np.float32))

        def place(a: Any) -> torch.Tensor:
            out = torch.zeros_like(obj.net.ids.data)
            if len(rows):
                out[torch.from_numpy(rows)] = tensor(a)
            return out

        sd = {k: tensor(v) for k, v in state["net"].items()}
        sd["ids"] = place(state["net"]["ids"])
        obj.net.load_state_dict(sd)
        obj.known[:] = False
        obj.known[rows] = np.asarray(state["known"], dtype=bool)
        params = dict(obj.net.named_parameters())
        for name, m in state["moments"].items():
            p = params[name]
            ea, eas = m["exp_avg"], m["exp_avg_sq"]
            obj.opt.state[p] = {
                "step": torch.tensor(m["step"]),
                "exp_avg": place(ea) if name == "ids" else tensor(ea),
                "exp_avg_sq": place(eas) if name == "ids" else tensor(eas),
            }
        obj.steps = state["steps"]
        obj.serving = obj._frozen()
        return obj
