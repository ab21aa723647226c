"""The engine's in-memory catalogue: video id <-> dense index, publish time, content vector,
and the thumbnail's visual descriptor where one could be read.

Models key their arrays by a dense index so that scoring is one numpy operation over many items.
The index is local to one engine (two workers may number videos differently), so anything that
leaves the engine names videos by id.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from workers import kernels
from workers.thumbnails import VISUAL_DIM


class Catalog:
    def __init__(self, dim: int, visual_dim: int = VISUAL_DIM) -> None:
        self.dim = dim
        self.visual_dim = visual_dim
        self.ids: list[str] = []
        self._idx: dict[str, int] = {}
        self.published_at = np.zeros(0, dtype=np.float64)
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.has_content = np.zeros(0, dtype=bool)
        # visual descriptors as int16 scaled to each row's largest value, with each row's
        # 1/norm: 0.9 kB a video, cosines within 1e-5, and, unlike float16 (which numpy
        # converts in software, ~1 ms for a few hundred candidates), read as float32 in ~0.1 ms.
        # Allocated at the first one, so a catalogue without thumbnails holds none.
        self.visuals = np.zeros((0, visual_dim), dtype=np.int16)
        self.visual_inv = np.zeros(0, dtype=np.float32)
        self.has_visual = np.zeros(0, dtype=bool)
        # each video's category as a code into ``categories`` (0: none), so that a reason can
        # name the topic (issue 15) for 4 bytes a video
        self.category = np.zeros(0, dtype=np.int32)
        self.categories: list[str] = [""]
        self._category_code: dict[str, int] = {"": 0}
        self.without_content: set[int] = set()  # videos known only from events, so far
        self._version = 0
        self._since: tuple[int, float, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, video_id: str) -> int | None:
        return self._idx.get(video_id)

    def add(self, video_id: str, published_at: float) -> int:
        """Index of ``video_id``, registering it when new (an event may precede its video)."""
        idx = self._idx.get(video_id)
        if idx is not None:
            return idx
        video_id = sys.intern(video_id)  # users' histories share this one string object
        idx = len(self.ids)
        if idx >= len(self.published_at):
            cap = max(64, 2 * idx)
            pub = np.zeros(cap, dtype=np.float64)
            pub[:idx] = self.published_at[:idx]
            vec = np.zeros((cap, self.dim), dtype=np.float32)
            vec[:idx] = self.vectors[:idx]
            has = np.zeros(cap, dtype=bool)
            has[:idx] = self.has_content[:idx]
            cat = np.zeros(cap, dtype=np.int32)
            cat[:idx] = self.category[:idx]
            vis = np.zeros(cap, dtype=bool)
            vis[:idx] = self.has_visual[:idx]
            self.published_at, self.vectors, self.has_content = pub, vec, has
            self.category, self.has_visual = cat, vis
        self.ids.append(video_id)
        self._idx[video_id] = idx
        self.published_at[idx] = published_at
        self.without_content.add(idx)
        self._version += 1
        return idx

    def set_content(self, idx: int, vector: np.ndarray, published_at: float) -> None:
        self.vectors[idx] = vector
        self.has_content[idx] = True
        self.published_at[idx] = published_at
        self.without_content.discard(idx)
        self._version += 1

    def set_visual(self, idx: int, vector: np.ndarray) -> None:
        """Store the video's visual descriptor (``visual_dim`` values, finite, not all 0)."""
        if len(self.visuals) <= idx:
            cap = len(self.has_visual)
            grown = np.zeros((cap, self.visual_dim), dtype=np.int16)
            grown[: len(self.visuals)] = self.visuals
            inv = np.zeros(cap, dtype=np.float32)
            inv[: len(self.visual_inv)] = self.visual_inv
            self.visuals, self.visual_inv = grown, inv
        v = np.asarray(vector, dtype=np.float64)
        q = np.round(v * (32767.0 / np.abs(v).max()))
        self.visuals[idx] = q
        self.visual_inv[idx] = 1.0 / np.linalg.norm(q)
        self.has_visual[idx] = True

    def unit_visuals(self, idx: np.ndarray) -> np.ndarray:
        """The unit-norm descriptors (float32 rows) of videos that have one."""
        return self.visuals[idx].astype(np.float32) * self.visual_inv[idx, None]

    def visual_profile(self, idx: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
        """Unit-norm weighted sum of the unit descriptors of ``idx`` (which all have one);
        None when it is zero."""
        rows = np.asarray(idx, dtype=np.int64)
        prof = kernels.weighted_rows(rows, weights, self.visuals, self.visual_inv)
        norm = float(np.linalg.norm(prof))
        return prof / np.float32(norm) if norm > 0 else None

    def visual_cosines(self, idx: np.ndarray, unit: np.ndarray) -> np.ndarray:
        """Cosine of each descriptor of ``idx`` (which all have one) with a unit vector: one
        pass over the int16 rows, no float copy of them (a few hundred candidates an event)."""
        rows = np.asarray(idx, dtype=np.int64)
        unit = np.asarray(unit, dtype=np.float32)
        return kernels.row_dots(rows, self.visuals, self.visual_inv, unit)

    def visual_of(self, idx: int) -> np.ndarray | None:
        """The video's visual descriptor (float32, unit norm), None without one."""
        if not self.has_visual[idx]:
            return None
        return self.unit_visuals(np.array([idx]))[0]

    def set_category(self, idx: int, name: str) -> bool:
        """Set the video's category; True when that changed it."""
        code = self._category_code.get(name)
        if code is None:
            code = self._category_code[name] = len(self.categories)
            self.categories.append(name)
        changed = bool(self.category[idx] != code)
        self.category[idx] = code
        return changed

    def category_of(self, idx: int) -> str | None:
        """The video's category (None: the catalogue has none for it)."""
        return self.categories[self.category[idx]] or None

    def published_since(self, cut: float, slack_s: float = 3600.0) -> np.ndarray:
        """Indices of the videos published at or after ``cut`` (the fresh ones).

        Asked on every content search with a ``cut`` that creeps forward with stream time, so
        the videos published since a slightly older cut are kept until the catalogue changes
        or the cut moves ``slack_s`` past it, and each call only filters that short list.
        """
        c = self._since
        if c is None or c[0] != self._version or not c[1] <= cut <= c[1] + slack_s:
            c = self._since = (
                self._version,
                cut,
                np.flatnonzero(self.published_at[: len(self.ids)] >= cut),
            )
        some = c[2]
        return some[self.published_at[some] >= cut]

    def to_state(self) -> dict[str, Any]:
        n = len(self.ids)
        state = {
            "dim": self.dim,
            "ids": list(self.ids),
            "published_at": self.published_at[:n].copy(),
            "vectors": self.vectors[:n].copy(),
            "has_content": self.has_content[:n].copy(),
            "category": self.category[:n].copy(),
            "categories": list(self.categories),
        }
        if self.has_visual[:n].any():
            state["visual_dim"] = self.visual_dim
            state["has_visual"] = self.has_visual[:n].copy()
            state["visuals"] = self.visuals[:n].copy()
            state["visual_inv"] = self.visual_inv[:n].copy()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Catalog:
        obj = cls(state["dim"], state.get("visual_dim", VISUAL_DIM))
        for vid, pub in zip(state["ids"], state["published_at"], strict=True):
            obj.add(vid, float(pub))
        n = len(obj.ids)
        obj.vectors[:n] = state["vectors"]
        obj.has_content[:n] = state["has_content"]
        if "category" in state:  # snapshots from before issue 15 have none
            obj.categories = list(state["categories"])
            obj._category_code = {c: i for i, c in enumerate(obj.categories)}
            obj.category[:n] = state["category"]
        if "has_visual" in state:  # snapshots from before issue 16, or without any, have none
            cap = len(obj.has_visual)
            obj.visuals = np.zeros((cap, obj.visual_dim), dtype=np.int16)
            obj.visuals[:n] = state["visuals"]
            obj.visual_inv = np.zeros(cap, dtype=np.float32)
            obj.visual_inv[:n] = state["visual_inv"]
            obj.has_visual[:n] = state["has_visual"]
        obj.without_content = set(np.flatnonzero(~obj.has_content[:n]).tolist())
        return obj
