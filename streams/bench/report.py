"""The bench's output: a table row per figure, the report they gather in, and its plot.

Every section returns ``Row``s; ``vidrec bench`` prints them as one markdown table and draws
the series a ``Report`` collects (engine rates, stream rates, latencies, RSS) as one PNG.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Row:
    """One line of the table: a figure, what it measured, and its target when it has one."""

    section: str
    name: str
    figure: str
    setting: str = ""
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    """Rows in the order measured, and the series the plot draws."""

    rows: list[Row] = field(default_factory=list)
    engine_rates: dict[int, float] = field(default_factory=dict)
    stream_rates: dict[str, float] = field(default_factory=dict)
    latencies: dict[str, tuple[float, float]] = field(default_factory=dict)
    rss: list[tuple[int, float]] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        for r in rows:
            self.rows.append(r)
            print(f"  {r.name}: {r.figure}  [{r.setting}]", file=sys.stderr, flush=True)


def _verdict(r: Row) -> str:
    if not r.target:
        return ""
    if r.met is None:
        return r.target
    return f"{r.target}: {'met' if r.met else 'MISSED'}"


def format_rows(rows: Sequence[Row]) -> str:
    """The table as markdown (also what is printed)."""
    lines = ["| benchmark | figure | target | setting |", "|---|---:|---|---|"]
    lines += [f"| {r.name} | {r.figure} | {_verdict(r)} | {r.setting} |" for r in rows]
    return "\n".join(lines)


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "load average unknown"
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cpus"


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# p50 and p99 targets of the freshness figures, by the plot's names
LATENCY_TARGETS_MS = {"event -> list": (20.0, 100.0), "video -> searchable": (None, 2000.0)}


def write_plot(report: Report, path: Path) -> str | None:
    """Draw the figures that have data; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'vidrec[bench]'): no PNG"
    panels = [
        p
        for p, has in (
            ("engine", report.engine_rates),
            ("stream", report.stream_rates),
            ("latency", report.latencies),
            ("rss", report.rss),
        )
        if has
    ]
    if not panels:
        return "nothing to plot"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        if p == "engine":
            sizes = sorted(report.engine_rates)
            ax.loglog(sizes, [report.engine_rates[n] for n in sizes], "o-", label="measured")
            ax.loglog([10_000, 100_000], [3000, 1000], "r^", label="target")
            ax.set(xlabel="videos in the catalogue", ylabel="events/s", title="embedded engine")
            ax.legend()
        elif p == "stream":
            names = list(report.stream_rates)
            ax.bar(names, [report.stream_rates[k] for k in names], color="tab:blue")
            ax.axhline(1500, color="r", ls="--", label="target, 1 worker")
            ax.set_yscale("log")
            ax.set(ylabel="records/s", title="streaming throughput")
            ax.legend()
        elif p == "latency":
            names = list(report.latencies)
            x = np.arange(len(names))
            ax.bar(x - 0.2, [report.latencies[k][0] for k in names], 0.4, label="p50")
            ax.bar(x + 0.2, [report.latencies[k][1] for k in names], 0.4, label="p99")
            for i, name in enumerate(names):
                for dx, goal in zip((-0.2, 0.2), LATENCY_TARGETS_MS.get(name, ()), strict=False):
                    if goal is not None:
                        ax.plot(i + dx, goal, "r_", markersize=22, markeredgewidth=2)
            ax.plot([], [], "r_", label="target")
            ax.set_xticks(x, names)
            ax.set_yscale("log")
            ax.set(ylabel="ms", title="freshness")
            ax.legend()
        else:
            ev, mb = zip(*report.rss, strict=True)
            ax.plot(ev, mb, "o-")
            ax.set(xlabel="events replayed", ylabel="RSS, MiB", title="memory over a replay")
            ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
