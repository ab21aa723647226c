"""Synthetic catalogues and event streams the engine, memory and streaming sections run on.

Vectors are random unit rows and items are drawn Zipf over a shuffled catalogue, so every
figure scales to any catalogue size without an encoder or a data set.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

DIM = 384


DAY = 86_400.0


T_START = 1_700_000_000.0  # stream time of the first synthetic event (epoch seconds)


# What a user does, and how often (the engine weighs each type; skips are negative feedback).
EVENT_MIX = (
    ("play", 0.35),
    ("watch", 0.25),
    ("complete", 0.20),
    ("like", 0.07),
    ("share", 0.03),
    ("skip", 0.10),
)


HOOKS = ("", "how to", "best", "easy", "top 10", "why", "my first", "ultimate", "live:")


TOPICS = (
    "pasta", "sourdough bread", "football", "guitar", "python", "yoga", "minecraft", "cats",
    "tokyo travel", "makeup", "piano", "chess", "electric cars", "drones", "coffee", "gardening",
    "marathon training", "home workout", "budget gaming pc", "street food", "jazz", "physics",
)  # fmt: skip


KINDS = (
    "recipe", "highlights", "tutorial", "review", "vlog", "challenge", "compilation", "tips",
    "for beginners", "explained", "unboxing", "in 10 minutes", "mistakes to avoid",
)  # fmt: skip


def unit_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def synthetic_titles(n: int, start: int = 0, seed: int = 0) -> list[str]:
    """Generated titles of varied length; the serial number keeps every text (and vector) unique."""
    rng = np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + n):
        t = f"{rng.choice(HOOKS)} {rng.choice(TOPICS)} {rng.choice(KINDS)}".strip()
        if rng.random() < 0.3:
            t += ". Today: " + " ".join(rng.choice(TOPICS + KINDS, size=rng.integers(3, 20)))
        out.append(f"{t} #{i}")
    return out


def synthetic_videos(
    start: int, n: int, rng: np.random.Generator, titles: Sequence[str] | None = None
) -> list[Any]:
    """Videos ``v<start>..``, published over the 30 days before ``T_START``.

    Built with ``model_construct``: a million validated models would cost more than the engine
    work they feed, and every value here is valid by construction.
    """
    from schemas import VideoPublished

    pubs = T_START - rng.uniform(0.0, 30 * DAY, size=n)
    return [
        VideoPublished.model_construct(
            video_id=f"v{start + i}",
            title=titles[i] if titles is not None else f"video {start + i}",
            category="bench",
            published_at=datetime.fromtimestamp(float(pubs[i]), UTC),
        )
        for i in range(n)
    ]


class ItemSampler:
    """Draws video indices with a Zipf(1) popularity over a random order of the catalogue."""

    def __init__(self, n: int, rng: np.random.Generator, exponent: float = 1.0) -> None:
        self.order = rng.permutation(n)
        cdf = np.cumsum(1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent)
        self.cdf = cdf / cdf[-1]
        self.rng = rng

    def draw(self, k: int) -> np.ndarray:
        ranks = np.searchsorted(self.cdf, self.rng.random(k), side="right")
        return self.order[np.minimum(ranks, len(self.order) - 1)]


def synthetic_events(
    items: np.ndarray,
    users: np.ndarray,
    rng: np.random.Generator,
    serial: int,
    seconds_per_event: float = 1.0,
    validate: bool = False,
) -> list[Any]:
    """User events ``e<serial>..`` for the given item and user indices, one per stream second.

    ``validate=False`` uses ``model_construct`` (for the engine loops, which never re-check);
    events that go to the broker are validated, as a producer's are.
    """
    from schemas import EventType, UserEvent

    kinds = [EventType(k) for k, _ in EVENT_MIX]
    p = np.array([w for _, w in EVENT_MIX])
    types = rng.choice(len(kinds), size=len(items), p=p / p.sum())
    make = UserEvent if validate else UserEvent.model_construct
    return [
        make(
            event_id=f"e{serial + j}",
            user_id=f"u{users[j]}",
            video_id=f"v{items[j]}",
            type=kinds[types[j]],
            ts=datetime.fromtimestamp(T_START + (serial + j) * seconds_per_event, UTC),
        )
        for j in range(len(items))
    ]
