"""The contract every online model of the engine keeps: learn one event, score, snapshot.

It is river's ``learn_one`` habit, split in two for the streaming path: ``deltas_one`` is the
user-side step (it may update what the model holds about that one user, and returns the
item-side increments as plain data), ``apply_many`` the item-side step (it adds increments,
from this engine or from another worker). ``learn_one`` is both, in one process. A model is
fed ``Observation``s and never sees a message, a topic or another model, so one contract
test (``tests/test_models.py``) runs over every model as it is.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class Observation:
    """One user action as the models see it; also the query a model scores for.

    ``item`` is whatever the caller names items by (the engine: a catalogue index, or a video
    id for the increments it ships); ``history`` is the user's recent positive items before
    this one, most recent first, as ``(item, ts, weight)``; ``negatives`` are sampled items the
    user did not pick, for the models that learn from contrast.
    """

    user: Hashable
    item: Any
    ts: float
    weight: float = 1.0
    history: Sequence[tuple[Any, float, float]] = ()
    negatives: Sequence[int] = ()


@runtime_checkable
class OnlineModel(Protocol):
    """What the engine asks of a behaviour model (co-occurrence, factors, popularity)."""

    def deltas_one(self, obs: Observation) -> list[Any]:
        """The user step: the item-side increments one event causes (plain, shippable data)."""
        ...

    def apply_many(self, deltas: Iterable[Any]) -> None:
        """The item step: add increments, whichever engine computed them."""
        ...

    def learn_one(self, obs: Observation) -> None:
        """Both steps at once (one process, no other worker to tell)."""
        ...

    def score_many(self, query: Observation, items: np.ndarray) -> np.ndarray:
        """Scores of ``items`` for the user ``query`` describes; reads state, creates none."""
        ...

    def forget_user(self, user: Hashable) -> bool:
        """Drop what the model holds about one user alone; ``True`` if it held anything."""
        ...

    def to_state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self: ...
