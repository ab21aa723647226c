"""What the engine holds per user: the event ledger and the state derived from it.

A user's state is the only thing that grows with the number of users, so every collection
here is capped by a setting and kept in machine words (arrays), not Python objects; see
``UserState`` for what one user costs.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.settings import EngineSettings

NO_ITEMS = np.zeros(0, dtype=np.int32)


def event_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class Ledger:
    """A user's accepted, weighted events, oldest first: the one record of what the user did.

    The history the ranker reads, the seen set it filters and what a forget subtracts are all
    derived from it, so nothing about a user is stored twice. An event costs 20 bytes: the
    catalogue index of the video (engine-local: a snapshot names videos by id), the time and
    the weight. Capped (``events_kept``): beyond it the oldest events are dropped, and their
    (long decayed) contributions can no longer be subtracted; ``dropped`` counts them.
    """

    __slots__ = ("items", "ts", "w", "dropped")

    def __init__(
        self,
        items: Iterable[int] = (),
        ts: Iterable[float] = (),
        w: Iterable[float] = (),
        dropped: int = 0,
    ) -> None:
        self.items = array("i", items)
        self.ts = array("d", ts)
        self.w = array("d", w)
        self.dropped = dropped

    def append(self, item: int, ts: float, w: float, cap: int) -> None:
        self.items.append(item)
        self.ts.append(ts)
        self.w.append(w)
        over = len(self.items) - cap
        if over > 0:
            del self.items[:over], self.ts[:over], self.w[:over]
            self.dropped += over

    def __len__(self) -> int:
        return len(self.items)

    @property
    def total(self) -> int:
        """Events ever appended: changes on every append, so it keys what is derived."""
        return len(self.items) + self.dropped

    def rows(self, ids: Sequence[str]) -> Iterator[tuple[str, float, float]]:
        """``(video_id, ts, weight)`` oldest first; ``ids`` is the catalogue's id list."""
        return zip([ids[i] for i in self.items], self.ts, self.w, strict=True)

    def history(self, n: int) -> list[tuple[int, float, float]]:
        """The ``n`` most recent positive items as ``(item, ts, weight)``, most recent first.

        What ``step_history`` builds event by event, read backwards from the ledger: a run of
        positive events on the same item (play -> complete -> like) is one entry with the run's
        first time and its largest weight; negative events are not part of it.
        """
        items, ts, w = self.items, self.ts, self.w
        out: list[tuple[int, float, float]] = []
        cur_item, cur_ts, cur_w = -1, 0.0, 0.0
        for i in range(len(items) - 1, -1, -1):
            wi = w[i]
            if wi <= 0:
                continue
            it = items[i]
            if it == cur_item:
                cur_ts = ts[i]
                if wi > cur_w:
                    cur_w = wi
                continue
            if cur_item >= 0:
                out.append((cur_item, cur_ts, cur_w))
                if len(out) == n:
                    return out
            cur_item, cur_ts, cur_w = it, ts[i], wi
        if cur_item >= 0:
            out.append((cur_item, cur_ts, cur_w))
        return out

    def seen_recent(self, cap: int, n: int) -> list[int]:
        """Up to ``n`` of those items, the most recently seen first."""
        out: list[int] = []
        for it in reversed(self.items[-cap:]):
            if it not in out:
                out.append(it)
                if len(out) == n:
                    break
        return out

    def to_state(self, ids: Sequence[str]) -> dict[str, Any]:
        return {
            "items": [ids[i] for i in self.items],
            "ts": list(self.ts),
            "w": list(self.w),
            "dropped": self.dropped,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any] | None, index_of: Callable[[str, float], int]) -> Ledger:
        """``index_of(video_id, ts)``: the engine's catalogue index, registering unknown ids."""
        if not s:
            return cls()
        return cls(
            [index_of(v, t) for v, t in zip(s["items"], s["ts"], strict=True)],
            s["ts"],
            s["w"],
            s.get("dropped", 0),
        )


def step_history(
    history: deque, vid: Any, ts: float, w: float, history_len: int
) -> tuple[bool, list[tuple[Any, float, float]]]:
    """How one positive event changes a user's history (most recent first), in place.

    Returns whether the event co-counts (``False`` when it only strengthens the item just
    watched: play -> complete -> like) and the history it co-counts with. The forget replays
    the user's ledger through it to recompute exactly the co-counts the user contributed;
    ``Ledger.history`` reads the same history backwards.
    """
    if history and history[0][0] == vid:
        _, hts, hw = history[0]
        history[0] = (vid, hts, max(hw, w))
        return False, []
    before = list(history)
    history.appendleft((vid, ts, w))
    while len(history) > history_len:
        history.pop()
    return True, before


def seen_cap(settings: EngineSettings) -> int:
    """How many distinct videos a user's seen set holds (the ledger keeps at least as many
    events, so an overflowing seen set can be rebuilt from the most recent ones)."""
    return settings.seen_max


def events_kept(settings: EngineSettings) -> int:
    """A user's ledger length: what a forget needs, and at least what the seen set needs."""
    return max(settings.erase_ledger_len, seen_cap(settings))


def _new_dedup() -> array:
    return array("Q")


def _new_recs() -> array:
    return array("i")


def _new_seen() -> np.ndarray:
    return np.zeros(0, dtype=np.int32)


@dataclass(slots=True)  # no per-instance __dict__: one is held per user
class UserState:
    """Everything held about one user; every collection is capped by a setting.

    Kept small because it is held for every user within the TTL: one ledger of weighted
    events from which history and seen set are derived, event-id hashes and the last list as
    machine words in arrays. Video indices are the engine's own, so a user's state leaves the
    engine only through ``to_state(ids)``, which names videos by id.
    """

    ledger: Ledger = field(default_factory=Ledger)  # weighted events, oldest first
    dedup: array = field(default_factory=_new_dedup)  # hashes of recent event ids, oldest first
    last_recs: array = field(default_factory=_new_recs)  # the last published list (indices)
    # every video the user acted on (sorted, distinct, 4 bytes each): never recommended again
    seen: np.ndarray = field(default_factory=_new_seen)
    last_ts: float = 0.0
    events: int = 0
    forgotten_at: float | None = None  # events up to this time were erased: never relearn them
    # decayed creator, language, format and length tastes (workers.metadata.UserMeta); kept
    # apart from ``to_state`` because it names creators by the engine's codes
    meta: Any = None

    def to_state(self, ids: Sequence[str]) -> dict[str, Any]:
        """JSON-able; ``ids`` is the engine's catalogue id list."""
        return {
            "forgotten_at": self.forgotten_at,
            "ledger": self.ledger.to_state(ids),
            "dedup": list(self.dedup),
            "last_recs": [ids[i] for i in self.last_recs],
            "seen": [ids[i] for i in self.seen],
            "last_ts": self.last_ts,
            "events": self.events,
        }

    @classmethod
    def from_state(cls, s: dict[str, Any], index_of: Callable[[str, float], int]) -> UserState:
        """``index_of(video_id, ts)``: the engine's catalogue index, registering unknown ids."""
        ledger = Ledger.from_state(s.get("ledger"), index_of)
        if not ledger and s.get("history"):
            # a snapshot from before the ledger held everything: its history, oldest first
            rows = list(reversed(s["history"]))
            ledger = Ledger([index_of(v, t) for v, t, _ in rows], [r[1] for r in rows],
                            [r[2] for r in rows])  # fmt: skip
        if "seen" in s:
            seen = np.unique(np.array([index_of(v, s["last_ts"]) for v in s["seen"]], np.int32))
        else:  # a snapshot from before the seen set was kept apart: its ledger's videos
            seen = np.unique(np.frombuffer(ledger.items, dtype=np.int32))
        return cls(
            ledger,
            array("Q", s["dedup"]),
            array("i", [index_of(v, s["last_ts"]) for v in s["last_recs"]]),
            seen.astype(np.int32),
            s["last_ts"],
            s["events"],
            s.get("forgotten_at"),
        )

    def mark_seen(self, item: int, cap: int) -> None:
        """Add ``item`` to the seen set; past ``cap`` videos, keep the most recently acted on.

        A sorted array, not a set: 4 bytes a video instead of ~60, and the ranker filters
        candidates against it with one ``searchsorted``.
        """
        seen = self.seen
        p = int(seen.searchsorted(item))
        if p < len(seen) and seen[p] == item:
            return
        grown = np.empty(len(seen) + 1, dtype=np.int32)  # np.insert's checks cost 10x this
        grown[:p], grown[p], grown[p + 1 :] = seen[:p], item, seen[p:]
        self.seen = grown
        if len(self.seen) > cap:
            self.seen = np.sort(np.array(self.ledger.seen_recent(len(self.ledger), cap), np.int32))

    def has_event(self, h: int) -> bool:
        """Whether the event-id hash ``h`` is among the remembered ones (one numpy scan)."""
        if not self.dedup:
            return False
        return bool((np.frombuffer(self.dedup, dtype=np.uint64) == np.uint64(h)).any())

    def remember_event(self, h: int, cap: int) -> None:
        self.dedup.append(h)
        if len(self.dedup) > cap:
            del self.dedup[: len(self.dedup) - cap]
