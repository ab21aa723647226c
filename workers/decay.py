"""Exponential time decay by forward inflation: add ``w * 2**((t - t_ref) / half_life)`` instead
of decaying every stored value at every tick.

Values stored in inflated units compare correctly with each other at any time, so a model can
keep thousands of decayed counters and touch only the ones an event changes. When the exponent
grows large the owner rebases (multiplies everything by the same factor once) to stay in range.
"""

from __future__ import annotations

import math

_REBASE_AT = 60.0  # log2 of the inflation factor that triggers a rebase (2**60 ~ 1e18)


class DecayClock:
    """Turns a timestamp into an inflation factor relative to a moving reference time."""

    __slots__ = ("half_life_s", "t_ref")

    def __init__(self, half_life_s: float, t_ref: float | None = None) -> None:
        self.half_life_s = float(half_life_s)
        self.t_ref = t_ref

    def factor(self, ts: float) -> float:
        """Inflation factor of an increment made at ``ts``."""
        if self.t_ref is None:
            self.t_ref = ts
        return 2.0 ** ((ts - self.t_ref) / self.half_life_s)

    def needs_rebase(self, ts: float) -> bool:
        return self.t_ref is not None and (ts - self.t_ref) / self.half_life_s > _REBASE_AT

    def rebase(self, ts: float) -> float:
        """Move the reference to ``ts``; returns the factor every stored value must be scaled by."""
        assert self.t_ref is not None
        scale = 2.0 ** (-(ts - self.t_ref) / self.half_life_s)
        self.t_ref = ts
        return scale

    def deflate(self, ts: float) -> float:
        """Factor that turns an inflated value back into its decayed value as seen at ``ts``."""
        if self.t_ref is None:
            return 1.0
        return 2.0 ** (-(ts - self.t_ref) / self.half_life_s)

    def to_state(self) -> dict:
        return {"half_life_s": self.half_life_s, "t_ref": self.t_ref}

    @classmethod
    def from_state(cls, state: dict) -> DecayClock:
        return cls(state["half_life_s"], state["t_ref"])


def half_life_days(days: float) -> float:
    """Seconds in ``days`` days (settings speak days; clocks speak seconds)."""
    if not math.isfinite(days) or days <= 0:
        raise ValueError(f"half-life must be a positive number of days, got {days!r}")
    return days * 86400.0
