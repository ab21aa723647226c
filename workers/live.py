"""Live quality: HR@10 and NDCG@10 of the lists a running engine publishes, over a sliding window.

The engine already looks at the user's last published list when the user's next event arrives
(the fusion learns from where the pick stood in it), so the hit rate that ``vidrec evaluate``
computes offline on a replay comes for free online: each positive event on a video the user
had not acted on is one trial, a hit when the video stood in the first ``k`` places of the list
the user was shown before it. A worker exports the window's figures as gauges and in its
``WorkerStats`` record, so an on-call engineer sees quality drop as it happens, not in the next
offline evaluation.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Hashable, Sequence

from river import stats, utils

# 1 / log2(rank + 2) for ranks 0..k-1: the gain of a hit at each place
_GAINS = tuple(1.0 / math.log2(r + 2) for r in range(1000))


class LiveQuality:
    """HR@k and NDCG@k over the last ``window`` trials, and since the start.

    One relevant item per trial (the item the user picked next), so HR@k is the share of trials
    whose pick stood in the top ``k`` and NDCG@k the mean of ``1 / log2(rank + 2)`` over them
    (0 for a miss), exactly as ``workers.evaluation.Evaluator`` scores a replay. The window is
    river's ``utils.Rolling`` over ``stats.Mean`` (each new trial reverts the oldest one), so
    memory is ``window`` floats whatever the stream's length; the all-time means are plain
    ``stats.Mean``, which a replay's summary compares with the offline evaluation.

    Parameters
    ----------
    window
        Trials the live figures cover (``VIDREC_ENGINE_LIVE_WINDOW``).
    k
        List depth scored (10: the figures are HR@10 and NDCG@10).
    """

    def __init__(self, window: int = 1000, k: int = 10) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not 1 <= k <= len(_GAINS):
            raise ValueError(f"k must be between 1 and {len(_GAINS)}, got {k}")
        self.window = window
        self.k = k
        self._hr = utils.Rolling(stats.Mean, window_size=window)
        self._ndcg = utils.Rolling(stats.Mean, window_size=window)
        self._hr_all = stats.Mean()
        self._ndcg_all = stats.Mean()

    def learn_one(self, published: Sequence[Hashable] | array, next_item: Hashable) -> int | None:
        """Score one trial: ``published`` is the list the user was shown (best first, any
        length: only the first ``k`` count), ``next_item`` what they picked next. Returns the
        pick's place in the list (0-based), ``None`` for a miss."""
        k = min(self.k, len(published))
        try:
            rank: int | None = published.index(next_item, 0, k)  # type: ignore[call-arg,arg-type]
        except ValueError:
            rank = None
        hit = 0.0 if rank is None else 1.0
        gain = 0.0 if rank is None else _GAINS[rank]
        self._hr.update(hit)
        self._ndcg.update(gain)
        self._hr_all.update(hit)
        self._ndcg_all.update(gain)
        return rank

    def get(self) -> tuple[float | None, float | None, int]:
        """``(hr, ndcg, trials)`` over the window; ``None`` figures before the first trial."""
        n = len(self._hr.window)
        if n == 0:
            return None, None, 0
        return self._hr.get(), self._ndcg.get(), n

    def totals(self) -> tuple[float | None, float | None, int]:
        """``(hr, ndcg, trials)`` since the start (what a replay's evaluation compares)."""
        n = int(self._hr_all.n)
        if n == 0:
            return None, None, 0
        return self._hr_all.get(), self._ndcg_all.get(), n
