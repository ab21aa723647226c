"""Self-tuning: prequential successive halving of the engine's settings on a log's first part,
validated on the rest.

Every trial is a replay through the production loop (``workers.embedded.drive``: predict, then
learn), made cheap: the videos are embedded once (``CachedEncoder``; the hashing encoder by
default) and each engine keeps its content search in memory (no index). Trials are random
perturbations of the defaults, drawn from ``SPACE``; each rung replays every surviving trial on
a longer prefix of the tuning part (1/8, 1/4, 1/2 of it) and keeps the best third. A trial is
scored by NDCG@10 over the targets of the second half of its prefix, so the cold start that every
trial shares does not drown the differences. A guard keeps cold start honest: a trial whose
brand-new-video HR@10 falls below the defaults' on the same prefix ranks after every trial that
keeps it. The finalists and the defaults then replay the whole log once each, and only the
held-out part (after the tuning part) decides: a finalist replaces the defaults only when it
beats them there, guard included.

The search space is a declarative table over ``EngineSettings`` fields; a knob the settings do
not have (an older or newer engine) is skipped, as is the weight of an event type the log never
uses.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import random
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import UserEvent, VideoPublished
from workers.evaluation import Evaluator
from workers.settings import EngineSettings


class TuneError(ValueError):
    """A log the tuner cannot work with."""


@dataclass(frozen=True)
class Knob:
    """One searched setting: either ``choices`` or a ``low``..``high`` range (``log`` scale for
    quantities that matter by ratio: half-lives, learning rates)."""

    name: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()
    # low/high are fractions of the log's span in days: a half-life must suit the log's own
    # pace (a day is an age on a video platform and nothing on a 20-year ratings log)
    span: bool = False


# The table the tuner searches; add a row to search a new EngineSettings field.
SPACE: tuple[Knob, ...] = (
    Knob("cooc_half_life_days", 0.01, 10.0, log=True, span=True),
    Knob("popularity_half_life_days", 0.0005, 2.0, log=True, span=True),
    Knob("recent_half_life_days", 0.0005, 1.0, log=True, span=True),
    Knob("fresh_days", 1.0, 60.0, log=True),
    Knob("cooc_window", choices=(3, 5, 10, 20, 40)),
    Knob("cooc_topk", choices=(50, 100, 200)),
    Knob("history_len", choices=(20, 50, 100)),
    Knob("candidates_cooc", choices=(100, 200, 400)),
    Knob("candidates_content", choices=(20, 50, 100)),
    Knob("candidates_fresh", choices=(10, 30, 60)),
    Knob("candidates_mf", choices=(0, 25, 50, 100)),
    Knob("candidates_popular", choices=(50, 100, 200)),
    Knob("fresh_slots", choices=(0, 1, 2, 3)),
    Knob("fusion_lr", 0.002, 0.2, log=True),
    Knob("fusion_l2", 1e-5, 1e-2, log=True),
    Knob("fusion_pool", choices=(20, 50, 100)),
    Knob("factors_lr", 0.005, 0.3, log=True),
    Knob("factors_l2", 1e-3, 0.1, log=True),
    Knob("factors_dim", choices=(16, 32, 64)),
    Knob("factors_negatives", choices=(4, 8, 16, 32)),
    Knob("factors_loss", choices=("pointwise", "bpr")),
    Knob("cold_any_age", choices=(True, False)),
    # the sequential model (issue 17): on or off, and its size and training pace
    Knob("seq_enabled", choices=(False, True)),
    Knob("seq_dim", choices=(32, 64)),
    Knob("seq_train_every", choices=(50, 100, 200)),
    Knob("candidate_refresh_events", choices=(2, 4, 8)),
    # metadata known at upload (issue 16): how long a user's tastes last, and how many of their
    # creators' new videos are candidates
    Knob("metadata_half_life_days", 0.005, 5.0, log=True, span=True),
    Knob("candidates_creator", choices=(0, 15, 30, 60)),
    Knob("creator_min_share", choices=(0.02, 0.05, 0.1)),
    Knob("weight_play", 0.25, 4.0, log=True),
    Knob("weight_watch", 0.25, 6.0, log=True),
    Knob("weight_complete", 0.25, 8.0, log=True),
    Knob("weight_like", 0.25, 10.0, log=True),
    Knob("weight_share", 0.25, 10.0, log=True),
    Knob("weight_skip", -3.0, 0.0),
    Knob("weight_dislike", -6.0, 0.0),
)

METRIC = "ndcg@10"
RUNGS = (1 / 8, 1 / 4, 1 / 2)


def active_space(
    space: Sequence[Knob], event_types: set[str], fields: Sequence[str] | None = None
) -> tuple[list[Knob], list[str]]:
    """The knobs worth searching, and why the others are skipped (one line each)."""
    fields = list(EngineSettings.model_fields) if fields is None else list(fields)
    keep: list[Knob] = []
    skipped: list[str] = []
    for knob in space:
        if knob.name not in fields:
            skipped.append(f"{knob.name}: not an EngineSettings field of this engine")
        elif knob.name.startswith("weight_") and knob.name[7:] not in event_types:
            skipped.append(f"{knob.name}: no {knob.name[7:]} events in the log")
        else:
            keep.append(knob)
    return keep, skipped


def scale_to_span(knobs: Sequence[Knob], messages: Sequence[Any]) -> list[Knob]:
    """``span`` knobs with their range in days of this log's span (first to last user event)."""
    ts = [m.ts.timestamp() for m in messages if isinstance(m, UserEvent)]
    days = max((max(ts) - min(ts)) / 86400.0, 1 / 24) if ts else 1.0
    return [
        dataclasses.replace(k, low=k.low * days, high=k.high * days, span=False) if k.span else k
        for k in knobs
    ]


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def sample_trial(
    knobs: Sequence[Knob], defaults: EngineSettings, rng: random.Random, p: float = 0.4
) -> dict[str, Any]:
    """Overrides of a random neighbour of the defaults: each knob moves with probability ``p``
    (at least one does); ranges move by a normal step (on the log scale for ``log`` knobs)
    a quarter of the range wide, clipped."""
    out: dict[str, Any] = {}
    while not out:
        for k in knobs:
            if rng.random() >= p:
                continue
            cur = getattr(defaults, k.name)
            if k.choices:
                value = rng.choice([c for c in k.choices if c != cur] or list(k.choices))
            elif k.log and not k.low <= cur <= k.high:
                # a default outside the range (a half-life made for another pace): anywhere in it
                value = _round(math.exp(rng.uniform(math.log(k.low), math.log(k.high))))
            elif k.log:
                lo, hi = math.log(k.low), math.log(k.high)
                x = math.log(min(max(cur, k.low), k.high)) + rng.gauss(0, (hi - lo) / 4)
                value = _round(math.exp(min(max(x, lo), hi)))
            else:
                x = cur + rng.gauss(0, (k.high - k.low) / 4)
                value = _round(min(max(x, k.low), k.high))
            if k.integer:
                value = int(round(value))
            if value != cur:
                out[k.name] = value
    return out


# -- scoring ------------------------------------------------------------------------------------
class TargetLog(Evaluator):
    """The evaluator, also keeping each scored target's stream position (ordinal of its user
    event), rank and brand-new flag, so metrics can be read for any window of the stream."""

    def __init__(self, fresh_days: float = 7.0) -> None:
        super().__init__(ks=(10, 20), fresh_days=fresh_days)
        self.position = 0
        self.pos = array("q")
        self.rank = array("i")
        self.brand_new = array("b")

    def on_event(self, event: UserEvent) -> None:
        n_all, n_bn = self.acc["all"].n, self.acc["brand_new"].n
        super().on_event(event)
        if self.acc["all"].n != n_all:
            shown = self._last.get(event.user_id) or []
            self.pos.append(self.position)
            self.rank.append(shown.index(event.video_id) if event.video_id in shown else -1)
            self.brand_new.append(self.acc["brand_new"].n != n_bn)
        self.position += 1

    def window(self, lo: int, hi: int, k: int = 10) -> dict[str, float]:
        """HR@k, NDCG@k and brand-new HR@k over targets at positions ``lo <= pos < hi``."""
        pos = np.frombuffer(self.pos, dtype=np.int64)
        rank = np.frombuffer(self.rank, dtype=np.int32)
        bn = np.frombuffer(self.brand_new, dtype=np.int8).astype(bool)
        m = (pos >= lo) & (pos < hi)
        hit = m & (rank >= 0) & (rank < k)
        gain = np.where(hit, 1.0 / np.log2(np.maximum(rank, 0) + 2.0), 0.0)
        n, n_bn = int(m.sum()), int((m & bn).sum())
        return {
            "events": n,
            f"hr@{k}": float(hit.sum()) / n if n else 0.0,
            f"ndcg@{k}": float(gain.sum()) / n if n else 0.0,
            "brand_new_events": n_bn,
            f"brand_new_hr@{k}": float((hit & bn).sum()) / n_bn if n_bn else 0.0,
        }

    def curve(self, total: int, bins: int = 10, k: int = 10) -> list[float]:
        """HR@k per tenth (``bins``) of the stream's user events."""
        pos = np.frombuffer(self.pos, dtype=np.int64)
        rank = np.frombuffer(self.rank, dtype=np.int32)
        b = np.minimum(pos * bins // max(total, 1), bins - 1)
        n = np.bincount(b, minlength=bins)
        h = np.bincount(b, weights=(rank >= 0) & (rank < k), minlength=bins)
        return [float(x / y) if y else 0.0 for x, y in zip(h, n, strict=True)]


# -- replays ------------------------------------------------------------------------------------
@dataclass
class Replay:
    """What a replay needs, shared by every trial (forked workers inherit it)."""

    messages: list[Any]
    encoder: Any
    user_ends: np.ndarray  # message index just after each user event
    base: EngineSettings

    @property
    def user_events(self) -> int:
        return len(self.user_ends)


_SHARED: Replay | None = None
_REPLAYED: Any = None  # a shared counter of messages replayed, for progress between results


def prepare(messages: list[Any], encoder: Any, base: EngineSettings | None = None) -> Replay:
    """Index the log's user events and embed every video once (the cache is shared by every
    replay, and by forked workers)."""
    from workers.inprocess import CachedEncoder

    cached = encoder if hasattr(encoder, "_cache") else CachedEncoder(encoder)
    texts = [m.text() for m in messages if isinstance(m, VideoPublished)]
    for i in range(0, len(texts), 256):
        cached.encode_many(texts[i : i + 256])
    ends = np.array([i + 1 for i, m in enumerate(messages) if isinstance(m, UserEvent)])
    return Replay(messages, cached, ends.astype(np.int64), base or EngineSettings())


def replay_one(
    rp: Replay,
    overrides: dict[str, Any],
    n_user: int,
    windows: dict[str, tuple[int, int]],
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Replay the log up to its ``n_user``-th user event with ``overrides``; metrics by window."""
    from workers.engine import Engine
    from workers.inprocess import drive

    settings = rp.base.model_copy(update=overrides)
    engine = Engine(EngineSettings.model_validate(settings.model_dump()), rp.encoder, None)
    ev = TargetLog(fresh_days=rp.base.fresh_days)
    stop = int(rp.user_ends[n_user - 1]) if n_user else 0
    t0 = time.perf_counter()
    stats = drive(rp.messages[:stop], engine, evaluator=ev, on_progress=on_progress)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {name: ev.window(lo, hi) for name, (lo, hi) in windows.items()}
    out["events_per_s"] = stats.events / seconds if seconds else 0.0
    out["seconds"] = seconds
    out["curve_hr@10"] = ev.report().get("curve_hr@10") or ev.curve(rp.user_events)
    return out


def _replay_task(task: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
    key, overrides, n_user, windows = task
    assert _SHARED is not None
    counter = _REPLAYED

    def tick(n: int) -> None:  # drive calls it every 1000 messages
        if counter is not None:
            with counter.get_lock():
                counter.value += 1000

    return key, replay_one(_SHARED, overrides, n_user, windows, tick)


# -- the search ---------------------------------------------------------------------------------
@dataclass
class Trial:
    key: int  # 0 = the defaults
    overrides: dict[str, Any]
    rungs: list[dict[str, Any]] = field(default_factory=list)
    validation: dict[str, Any] | None = None

    @property
    def score(self) -> float:
        return self.rungs[-1]["score"][METRIC] if self.rungs else float("-inf")


@dataclass
class TuneProgress:
    stage: str  # "rung 1/3", "validate"
    done: int
    total: int
    best: float | None
    elapsed_s: float
    note: str = ""


@dataclass
class TuneResult:
    best: Trial
    defaults: Trial
    trials: list[Trial]
    finalists: list[Trial]
    knobs: list[str]
    skipped: list[str]
    tuning_events: int
    user_events: int
    seconds: float
    rung_events: list[int]

    @property
    def changed(self) -> dict[str, Any]:
        return dict(self.best.overrides)


def _rank_key(t: Trial, ref: dict[str, float], part: str, slack: float) -> tuple[int, float]:
    s = t.rungs[-1][part] if part == "score" else (t.validation or {})[part]
    guard = s["brand_new_hr@10"] >= ref["brand_new_hr@10"] - slack
    return (int(guard), s[METRIC])


def tune(
    messages: list[Any],
    encoder: Any,
    *,
    trials: int = 16,
    seed: int = 0,
    tune_fraction: float = 0.5,
    rungs: Sequence[float] = RUNGS,
    keep: float = 1 / 3,
    finalists: int = 3,
    workers: int = 1,
    budget_s: float | None = None,
    space: Sequence[Knob] = SPACE,
    base: EngineSettings | None = None,
    guard_slack: float = 0.0,
    progress: Callable[[TuneProgress], None] | None = None,
    heartbeat_s: float = 30.0,
) -> TuneResult:
    """Search ``space`` around ``base`` (default: ``EngineSettings()``) on the first
    ``tune_fraction`` of the log's user events; validate on the rest.

    ``budget_s`` caps the wall time: after the first two replays the number of trials is cut
    so that the remaining rungs and the validation replays should fit (replay cost is taken as
    proportional to events, the validation's 1.5 times dearer per event as state grows).
    ``workers`` > 1 replays trials in forked processes (after the vectors are cached).
    """
    global _SHARED, _REPLAYED
    t_start = time.perf_counter()
    rp = prepare(messages, encoder, base)
    n_total = rp.user_events
    if n_total < 100:
        raise TuneError(f"the log has {n_total} user events; tuning needs at least 100")
    n_tune = max(2, int(n_total * tune_fraction))
    types = {m.type.value for m in messages if isinstance(m, UserEvent)}
    knobs, skipped = active_space(space, types)
    knobs = scale_to_span(knobs, messages)
    rng = random.Random(seed)
    pool_trials = [Trial(0, {})]
    seen: set[tuple] = {()}
    for i in range(1, trials + 1):
        for _ in range(20):
            ov = sample_trial(knobs, rp.base, rng) if knobs else {}
            sig = tuple(sorted(ov.items()))
            if sig not in seen:
                break
        seen.add(sig)
        pool_trials.append(Trial(i, ov))
    all_trials = list(pool_trials)
    defaults = pool_trials[0]
    rung_events = [max(2, int(n_tune * f)) for f in rungs]
    n_final = finalists

    def run_many(tasks: list[tuple[Any, ...]], stage: str, part: str) -> dict[Any, Any]:
        results: dict[Any, dict[str, Any]] = {}
        best = None

        def report(note: str = "") -> None:
            if progress is not None:
                elapsed = time.perf_counter() - t_start
                progress(TuneProgress(stage, len(results), len(tasks), best, elapsed, note))

        if pool is None:
            for task in tasks:
                key, res = _replay_task(task)
                results[key] = res
                best = max(best or 0.0, res[part][METRIC])
                report()
            return results
        # a heartbeat between results: long replays otherwise say nothing for minutes
        total = sum(int(rp.user_ends[t[2] - 1]) for t in tasks)
        _REPLAYED.value = 0
        it = pool.imap_unordered(_replay_task, tasks)
        while len(results) < len(tasks):
            try:
                key, res = it.next(timeout=heartbeat_s)
            except multiprocessing.TimeoutError:
                report(f"{min(99, 100 * _REPLAYED.value // max(total, 1))}% replayed")
                continue
            results[key] = res
            best = max(best or 0.0, res[part][METRIC])
            report()
        return results

    _SHARED = rp
    ctx = multiprocessing.get_context("fork")
    _REPLAYED = ctx.Value("q", 0)
    pool = ctx.Pool(workers) if workers > 1 else None
    try:
        survivors = pool_trials
        for r, n_user in enumerate(rung_events):
            stage = f"rung {r + 1}/{len(rung_events)} ({n_user} events)"
            windows = {"score": (n_user // 2, n_user)}
            todo = list(survivors)
            if r == 0 and budget_s is not None and len(todo) > workers:
                # time the first replays, then run only as many trials as the budget allows
                head, todo = todo[:workers], todo[workers:]
                res = run_many(
                    [(t.key, t.overrides, n_user, windows) for t in head], stage, "score"
                )
                for t in head:
                    t.rungs.append(res[t.key])
                rate = sum(res[t.key]["events_per_s"] for t in head) / len(head)
                left = budget_s - (time.perf_counter() - t_start)
                n_fit, n_final = plan_budget(
                    left, rate, workers, rung_events, keep, finalists, n_total, len(todo)
                )
                if n_fit < len(todo) or n_final < finalists:
                    if progress is not None:
                        note = (
                            f"budget: {len(todo) + len(head) - 1} trials cut to "
                            f"{n_fit + len(head) - 1}, {n_final} finalist(s)"
                        )
                        elapsed = time.perf_counter() - t_start
                        progress(TuneProgress(stage, len(head), len(head), None, elapsed, note))
                    dropped = {t.key for t in todo[n_fit:]}
                    todo = todo[:n_fit]
                    survivors = [t for t in survivors if t.key not in dropped]
                    all_trials = [t for t in all_trials if t.key not in dropped]
            res = run_many([(t.key, t.overrides, n_user, windows) for t in todo], stage, "score")
            for t in todo:
                t.rungs.append(res[t.key])
            ref = defaults.rungs[r]["score"]
            ranked = sorted(
                (t for t in survivors if t.key != 0),
                key=lambda t: _rank_key(t, ref, "score", guard_slack),
                reverse=True,
            )
            last = r == len(rung_events) - 1
            n_keep = n_final if last else max(n_final, math.ceil(len(ranked) * keep))
            survivors = [defaults] + ranked[:n_keep]
        final = survivors[1:]
        windows = {"tuning": (n_tune // 2, n_tune), "heldout": (n_tune, n_total)}
        res = run_many(
            [(t.key, t.overrides, n_total, windows) for t in survivors], "validate", "heldout"
        )
        for t in survivors:
            t.validation = res[t.key]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _SHARED = _REPLAYED = None
    ref = defaults.validation["heldout"]
    best = defaults
    if final:
        top = max(final, key=lambda t: _rank_key(t, ref, "heldout", guard_slack))
        if _rank_key(top, ref, "heldout", guard_slack) > (1, ref[METRIC]):
            best = top
    return TuneResult(
        best=best,
        defaults=defaults,
        trials=all_trials,
        finalists=final,
        knobs=[k.name for k in knobs],
        skipped=skipped,
        tuning_events=n_tune,
        user_events=n_total,
        seconds=time.perf_counter() - t_start,
        rung_events=rung_events,
    )


def plan_budget(
    left_s: float,
    rate: float,
    workers: int,
    rung_events: Sequence[int],
    keep: float,
    finalists: int,
    n_total: int,
    wanted: int,
) -> tuple[int, int]:
    """How many of the ``wanted`` remaining rung-1 replays, and how many finalists, fit in
    ``left_s`` when one process replays ``rate`` events/s.

    The validation replays run in rounds of ``workers`` and cost 1.5 times more per event than
    the first rung's (state grows); finalists are given up before trials, down to one.
    """
    rate = max(rate, 1e-9)
    for f in sorted({finalists, min(finalists, 1)}, reverse=True):
        val_s = math.ceil((f + 1) / workers) * n_total * 1.5 / rate
        for n in range(wanted, 0, -1):
            events = float(n * rung_events[0])
            alive = max(f, math.ceil((n + workers - 1) * keep))
            for ev in rung_events[1:]:
                events += (alive + 1) * ev
                alive = max(f, math.ceil(alive * keep))
            if events / (rate * workers) + val_s <= left_s and (n >= 4 or f == 1):
                return n, f
    return 0, min(finalists, 1)
