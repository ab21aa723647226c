"""The pictures of ``vidrec evaluate --plot`` and ``vidrec tune --plot/--plot-search``.

matplotlib is optional (``pip install 'vidrec[bench]'``): it is imported only when a picture is
asked for, and ``require_matplotlib`` lets a command fail with one line *before* a long replay
rather than after it. Each function returns the data it drew, so a test can hold the picture to
the figures it claims to show.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

HINT = "pip install 'vidrec[bench]'"


class PlotError(RuntimeError):
    """A picture that cannot be drawn (matplotlib missing); the message is one line."""


def require_matplotlib(command: str) -> None:
    """Raise ``PlotError`` naming ``command`` when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(f"vidrec {command}: plotting needs matplotlib ({HINT})") from None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    plt = _pyplot()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- vidrec evaluate --plot --------------------------------------------------------------------
def plot_segments(
    results: dict[str, dict[str, Any]], path: str | Path, log: str, k: int = 10
) -> dict[str, Any]:
    """HR@k per segment of the stream (``Evaluator.segments``), one line per system.

    x is the stream time of each segment's last user event, so a log whose pace changes shows
    it; the line between the halves (the cut of ``h1_``/``h2_``) and the start of the last 20 %
    are marked. Returns what was drawn: ``x`` (datetimes), ``lines`` (system -> HR@k per
    segment), ``half`` and ``last20`` (the marked times or None), ``title``.
    """
    plt = _pyplot()
    first = next(iter(results.values()))
    segs = first["segments"]
    x = [datetime.fromisoformat(s["end"]) for s in segs if s["end"] is not None]
    keep = [i for i, s in enumerate(segs) if s["end"] is not None]
    lines = {name: [r["segments"][i][f"hr@{k}"] for i in keep] for name, r in results.items()}
    n = len(segs)
    # the cut between segment n/2 - 1 and n/2 is the cut between the halves only for even n
    half = x[n // 2 - 1] if n % 2 == 0 and len(x) == n else None
    last20 = x[4 * n // 5 - 1] if n % 5 == 0 and len(x) == n else None
    user_events = segs[-1]["end_event"]
    span = "per tenth of the stream" if n == 10 else f"per {n}-th of the stream"
    title = (
        f"HR@{k} {span}: {Path(log).name}\n{user_events:,} user events, {first['events']:,} scored"
    )
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for name, ys in lines.items():
        main = name == "hybrid" or len(lines) == 1  # the system under test stands out
        style = "-" if main else "--"
        width = 2.2 if main else 1.2
        ax.plot(x, ys, style, marker="o", markersize=4, linewidth=width, label=name)
    marks = ((half, 1.0, " 2nd half ->", 1.0), (last20, 0.93, " last 20 %", 0.8))
    for at, y, label, width in marks:
        if at is None:
            continue
        ax.axvline(at, color="grey", linestyle=":", linewidth=width)
        ax.text(at, y, label, va="top", fontsize=8, color="grey",
                transform=ax.get_xaxis_transform())  # fmt: skip
    ax.set_xlabel("stream time (end of each segment of user events)")
    ax.set_ylabel(f"HR@{k} (next event)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    _save(fig, path)
    return {"x": x, "lines": lines, "half": half, "last20": last20, "title": title}


# -- vidrec tune --plot ------------------------------------------------------------------------
def plot_curves(result: Any, path: str | Path) -> dict[str, list[float]]:
    """HR@10 per tenth of the stream, defaults vs the chosen settings (or, when the defaults
    were kept, vs the best finalist they beat). Returns the lines drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [i + 0.5 for i in range(10)]
    lines = [("defaults", result.defaults, "-")]
    if result.best is not result.defaults:
        lines.append(("tuned", result.best, "-"))
    elif result.finalists:  # the defaults were kept: show what they beat
        top = max(result.finalists, key=lambda t: t.validation["heldout"]["ndcg@10"])
        lines.append((f"best finalist, trial {top.key} (not kept)", top, "--"))
    for label, t, style in lines:
        ax.plot(xs, t.validation["curve_hr@10"], style, marker="o", label=label)
    cut = 10 * result.tuning_events / result.user_events
    ax.axvline(cut, color="grey", linestyle="--", linewidth=1)
    ax.text(cut, ax.get_ylim()[1], " held out ->", va="top", fontsize=8, color="grey")
    ax.set_xlabel("tenth of the stream (user events)")
    ax.set_ylabel("HR@10 (next event)")
    ax.set_xlim(0, 10)
    ax.set_title("vidrec tune: prequential HR@10 over stream time")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    return {label: list(t.validation["curve_hr@10"]) for label, t, _ in lines}


# -- vidrec tune --plot-search -----------------------------------------------------------------
METRIC = "ndcg@10"


def search_data(result: Any, base: Any) -> dict[str, Any]:
    """What ``plot_search`` draws, from a ``workers.tuning.TuneResult``.

    ``replays``: every replay in the order the tuner launched them (rung by rung, trials by
    number, then the validation of the finalists and the defaults), each with its stage, trial,
    objective (NDCG@10 on the second half of the rung's prefix; on the held-out part for the
    validation), whether it kept the brand-new guard, and the best guarded objective so far in
    its stage (objectives of different stages are on different prefixes, so the line restarts).
    ``knobs``: for each searched setting that some trial changed, each trial's value (its
    override, else ``base``'s) against its first-rung objective, the one every trial has.
    """
    trials = sorted(result.trials, key=lambda t: t.key)
    n_rungs = len(result.rung_events)
    replays: list[dict[str, Any]] = []
    for r in range(n_rungs):
        stage = f"rung {r + 1} ({result.rung_events[r]:,} events)"
        ref = result.defaults.rungs[r]["score"]["brand_new_hr@10"]
        best = -math.inf
        for t in trials:
            if len(t.rungs) <= r:
                continue
            s = t.rungs[r]["score"]
            guard = s["brand_new_hr@10"] >= ref
            if guard:
                best = max(best, s[METRIC])
            replays.append(
                {
                    "stage": stage,
                    "trial": t.key,
                    "objective": s[METRIC],
                    "guard": guard,
                    "best": best,
                }
            )
    ref = result.defaults.validation["heldout"]["brand_new_hr@10"]
    best = -math.inf
    for t in trials:
        if t.validation is None:
            continue
        h = t.validation["heldout"]
        guard = h["brand_new_hr@10"] >= ref
        if guard:
            best = max(best, h[METRIC])
        replays.append(
            {
                "stage": "held-out",
                "trial": t.key,
                "objective": h[METRIC],
                "guard": guard,
                "best": best,
            }
        )
    knobs: dict[str, dict[str, list[Any]]] = {}
    for name in result.knobs:
        if not any(name in t.overrides for t in trials):
            continue
        default = getattr(base, name)
        knobs[name] = {
            "value": [t.overrides.get(name, default) for t in trials if t.rungs],
            "objective": [t.rungs[0]["score"][METRIC] for t in trials if t.rungs],
            "varied": [name in t.overrides for t in trials if t.rungs],
            "trial": [t.key for t in trials if t.rungs],
            "default": default,
        }
    return {"replays": replays, "knobs": knobs, "chosen": result.best.key}


def plot_search(result: Any, path: str | Path, base: Any) -> dict[str, Any]:
    """The tuner's search in one PNG: on top, every replay's objective in launch order with the
    best-so-far line of each stage (defaults as squares, a trial that broke the brand-new guard
    as a cross, the chosen settings as a star); below, one small panel per setting some trial
    changed, the trials' values against their first-rung objective (grey: the trial kept the
    default). Returns ``search_data``."""
    from matplotlib import ticker

    from workers.tuning import SPACE

    plt = _pyplot()
    data = search_data(result, base)
    replays, knobs = data["replays"], data["knobs"]
    cols = 4
    rows = math.ceil(len(knobs) / cols)
    fig = plt.figure(figsize=(12, 3.6 + 2.4 * rows))
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[1.6] + [1.0] * rows)
    ax = fig.add_subplot(grid[0, :])
    stages = list(dict.fromkeys(r["stage"] for r in replays))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for si, stage in enumerate(stages):
        idx = [i for i, r in enumerate(replays) if r["stage"] == stage]
        c = colors[si % len(colors)]
        ax.axvspan(idx[0] - 0.5, idx[-1] + 0.5, color=c, alpha=0.06)
        ax.text(
            idx[0] - 0.4,
            1.0,
            stage,
            va="top",
            fontsize=8,
            color=c,
            transform=ax.get_xaxis_transform(),
        )
        best = [(i, replays[i]["best"]) for i in idx if math.isfinite(replays[i]["best"])]
        if best:
            ax.step(
                [i for i, _ in best], [b for _, b in best], where="post", color=c, linewidth=1.5
            )
        for i in idx:
            r = replays[i]
            marker = "s" if r["trial"] == 0 else ("o" if r["guard"] else "x")
            ax.plot(i, r["objective"], marker, color=c, markersize=6 if r["trial"] == 0 else 4)
            final = stage == "held-out" and r["trial"] == data["chosen"]
            if final:
                ax.plot(i, r["objective"], "*", color="black", markersize=13, zorder=5)
    ax.set_xlabel("replay, in launch order (trials by number within a stage)")
    ax.set_ylabel("NDCG@10")
    ax.set_title(
        f"vidrec tune: {len(result.trials) - 1} trials, rungs of "
        f"{', '.join(f'{n:,}' for n in result.rung_events)} events, "
        f"{result.tuning_events:,} tuned / {result.user_events - result.tuning_events:,} "
        "held-out user events\nline: best so far in the stage (brand-new guard kept); "
        "square: defaults; x: broke the guard; star: chosen",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    space = {kb.name: kb for kb in SPACE}
    for j, (name, kd) in enumerate(knobs.items()):
        a = fig.add_subplot(grid[1 + j // cols, j % cols])
        knob = space.get(name)
        values = kd["value"]
        if knob is not None and knob.choices:
            labels = [str(c) for c in knob.choices]
            if str(kd["default"]) not in labels:
                labels.append(str(kd["default"]))
            xs = [labels.index(str(v)) for v in values]
            a.set_xticks(range(len(labels)), labels, fontsize=7)
            a.set_xlim(-0.5, len(labels) - 0.5)
        else:
            xs = [float(v) for v in values]
            if knob is not None and knob.log:
                a.set_xscale("log")
                if not knob.span:  # the whole searched range, so a short one still has ticks
                    a.set_xlim(knob.low / 1.2, knob.high * 1.2)
                a.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                a.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                a.xaxis.set_minor_formatter(ticker.NullFormatter())
        for x, y, varied, key in zip(xs, kd["objective"], kd["varied"], kd["trial"], strict=True):
            if key == data["chosen"] and key != 0:
                a.plot(x, y, "*", color="black", markersize=10, zorder=5)
            elif varied:
                a.plot(x, y, "o", color=colors[0], markersize=4)
            else:
                a.plot(x, y, ".", color="0.7", markersize=4)
        a.set_title(name, fontsize=8)
        a.tick_params(labelsize=7)
        a.grid(alpha=0.3)
        if j % cols == 0:
            a.set_ylabel("rung-1 NDCG@10", fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    return data
