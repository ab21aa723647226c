"""`vidrec evaluate --plot` and `vidrec tune --plot-search`: a real PNG, and the data drawn is the
evaluation's own figures, on a slice of the shipped sample."""

from __future__ import annotations

import gzip
import itertools
import json
import struct
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import UserEvent
from streams.cli import main
from streams.cli import plots as plots_mod
from streams.sample import default_sample_path
from streams.wire.eventlog import read_log

LIMIT = 4000


@pytest.fixture(autouse=True)
def _hashing_encoder(monkeypatch):
    """No transformer for these replays: the plots are about the loop, not the encoder."""
    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", "hashing")
    monkeypatch.delenv("VIDREC_SETTINGS_FILE", raising=False)


def _spy(monkeypatch, name: str) -> list:
    """Record the arguments and the return value of the real ``plots.<name>``."""
    calls: list = []
    real = getattr(plots_mod, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((args, out))
        return out

    monkeypatch.setattr(plots_mod, name, spy)
    return calls


def assert_png(path: Path, min_w: int = 400, min_h: int = 300) -> tuple[int, int]:
    """A PNG that decodes, of a sensible size, not blank."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert min_w <= w <= 4000 and min_h <= h <= 4000
    assert 10_000 < len(data) < 2_000_000
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (h, w)
    assert img.std() > 0.05  # lines and text, not an empty canvas
    return w, h


def _user_event_times(path: str, limit: int) -> list[datetime]:
    from streams.cli.options import limited

    return [m.ts for m in limited(read_log(path), limit) if isinstance(m, UserEvent)]


def test_evaluate_plot_draws_the_per_segment_figures(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    calls = _spy(monkeypatch, "plot_segments")
    png = tmp_path / "eval.png"
    log = str(default_sample_path())
    argv = ["evaluate", "--baselines", "--only", "item-knn,popularity", "--limit", str(LIMIT)]
    assert main([*argv, "--plot", str(png), "--json", "--quiet"]) == 0
    printed = capsys.readouterr()
    results = json.loads(printed.out)  # the notice of the plot goes to stderr under --json
    assert f"plot: {png}" in printed.err
    assert_png(png)
    ((args, drawn),) = calls
    assert set(drawn["lines"]) == {"item-knn", "popularity"}
    for name, r in results.items():
        segs = r["segments"]
        assert len(segs) == 10
        # the line is HR@10 per tenth, as the evaluation reports it
        assert drawn["lines"][name] == [s["hr@10"] for s in segs] == r["curve_hr@10"]
        assert sum(s["targets"] for s in segs) == r["events"]
        assert sum(s["targets"] for s in segs[:5]) == r["h1_events"]
        assert sum(s["targets"] for s in segs[8:]) == r["last20_events"]
    assert drawn["lines"]["item-knn"] != drawn["lines"]["popularity"]
    # x is the stream time of each tenth's last user event, read here from the log itself
    times = _user_event_times(log, LIMIT)
    segs = results["item-knn"]["segments"]
    assert segs[-1]["end_event"] == len(times) and segs[0]["first_event"] == 0
    ends = [times[s["end_event"] - 1] for s in segs]
    assert drawn["x"] == ends == [datetime.fromisoformat(s["end"]) for s in segs]
    assert all(a.tzinfo == UTC for a in drawn["x"])
    assert drawn["half"] == ends[4] and drawn["last20"] == ends[7]
    assert "sample.jsonl.gz" in drawn["title"] and f"{len(times):,} user events" in drawn["title"]


def test_evaluate_plot_of_a_recommendations_file(tmp_path, monkeypatch, capsys):
    """`vidrec evaluate LOG RECS --plot`: one line, the file's, equal to what it scores."""
    pytest.importorskip("matplotlib")
    log, recs, png = tmp_path / "log.jsonl", tmp_path / "recs.jsonl", tmp_path / "r.png"
    with gzip.open(default_sample_path(), "rt") as src:
        log.write_text("".join(itertools.islice(src, 2500)))
    assert main(["run", str(log), "--out", str(recs), "--quiet"]) == 0
    capsys.readouterr()
    calls = _spy(monkeypatch, "plot_segments")
    assert main(["evaluate", str(log), str(recs), "--plot", str(png), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert_png(png)
    ((_, drawn),) = calls
    assert drawn["lines"] == {"recs.jsonl": report["curve_hr@10"]}
    assert max(report["curve_hr@10"]) > 0
    assert "log.jsonl" in drawn["title"]


def test_a_plot_without_matplotlib_is_one_line_before_any_replay(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package imports as
    started: list = []
    monkeypatch.setattr("streams.cli.evaluate.run_systems", lambda *a, **k: started.append(a))
    argv = ["evaluate", "--baselines", "--only", "popularity", "--plot", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    msg = str(exc.value)
    assert "matplotlib" in msg and "vidrec[bench]" in msg and "\n" not in msg
    assert not started and not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit) as exc:
        main(["tune", str(default_sample_path()), "--plot-search", str(tmp_path / "s.png")])
    assert "matplotlib" in str(exc.value) and "\n" not in str(exc.value)


def test_tune_plot_search_draws_every_replay_and_each_changed_setting(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.jsonl"
    with gzip.open(default_sample_path(), "rt") as src:
        log.write_text("".join(itertools.islice(src, LIMIT)))
    calls = _spy(monkeypatch, "plot_search")
    png, curves = tmp_path / "search.png", tmp_path / "curves.png"
    argv = ["tune", str(log), "--out", str(tmp_path / "s.json"), "--trials", "3"]
    argv += ["--finalists", "1", "--workers", "1", "--quiet", "--seed", "3"]
    assert main([*argv, "--plot", str(curves), "--plot-search", str(png)]) == 0
    assert_png(curves)
    w, h = assert_png(png, min_w=800, min_h=600)
    ((args, drawn),) = calls
    result = args[0]
    trials = {t.key: t for t in result.trials}
    assert len(trials) == 4  # the defaults and three trials
    rungs = [r for r in drawn["replays"] if r["stage"] != "held-out"]
    held = [r for r in drawn["replays"] if r["stage"] == "held-out"]
    # one point per replay the tuner ran, with its own objective
    assert len(rungs) == sum(len(t.rungs) for t in trials.values())
    for r in rungs:
        rung = int(r["stage"].split()[1]) - 1
        assert r["objective"] == trials[r["trial"]].rungs[rung]["score"]["ndcg@10"]
    assert {r["trial"] for r in held} == {0} | {t.key for t in result.finalists}
    for r in held:
        assert r["objective"] == trials[r["trial"]].validation["heldout"]["ndcg@10"]
    # the best-so-far line of each stage: the running maximum of the guarded objectives
    for stage in {r["stage"] for r in drawn["replays"]}:
        best = float("-inf")
        for r in (x for x in drawn["replays"] if x["stage"] == stage):
            if r["guard"]:
                best = max(best, r["objective"])
            assert r["best"] == best
    assert drawn["chosen"] == result.best.key
    # one small panel per setting some trial changed, each trial at its value
    changed = {k for t in trials.values() for k in t.overrides}
    assert set(drawn["knobs"]) == changed and changed
    for name, kd in drawn["knobs"].items():
        assert kd["objective"] == [trials[k].rungs[0]["score"]["ndcg@10"] for k in kd["trial"]]
        for key, value, varied in zip(kd["trial"], kd["value"], kd["varied"], strict=True):
            assert varied == (name in trials[key].overrides)
            assert value == trials[key].overrides.get(name, kd["default"])
    assert h > w / 2  # the small multiples below the search
