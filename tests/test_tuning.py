"""Settings files load with the documented precedence and clear errors; the tuner finds a better
setting than a bad default on a planted log and writes a file that loads."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from schemas import EventType, Recommendations, UserEvent, VideoPublished
from streams.cli import main
from streams.wire.eventlog import LogWriter, read_log
from workers.encoder import HashingEncoder
from workers.settings import (
    SETTINGS_FILE_ENV,
    EngineSettings,
    SettingsFileError,
    load_settings,
    write_settings_file,
)
from workers.tuning import Knob, active_space, sample_trial, tune

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(SETTINGS_FILE_ENV, raising=False)
    for name in ("VIDREC_ENGINE_K", "VIDREC_ENGINE_COOC_WINDOW", "VIDREC_QDRANT_COLLECTION"):
        monkeypatch.delenv(name, raising=False)


def chain_log(n_chains: int = 12, length: int = 8, n_users: int = 120, seed: int = 1) -> list:
    """Users walk one chain of videos in order (chain c: video c.0 -> c.1 -> ...), an hour a
    step, users one after another: only co-occurrence over hours predicts the next video."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    msgs: list = [
        VideoPublished(
            video_id=f"c{c}.{j}",
            title=" ".join(rng.sample(words, 3)),
            published_at=T0 - timedelta(days=30),
        )
        for c in range(n_chains)
        for j in range(length)
    ]
    t = T0
    for u in range(n_users):
        c = rng.randrange(n_chains)
        for j in range(length):
            t += timedelta(hours=1)
            msgs.append(
                UserEvent(
                    event_id=f"e{u}.{j}",
                    user_id=f"u{u}",
                    video_id=f"c{c}.{j}",
                    type=EventType.WATCH,
                    ts=t,
                )
            )
    return msgs


def write_log(path, msgs) -> str:
    with LogWriter(path) as w:
        for m in msgs:
            w.write(m)
    return str(path)


# -- settings files ----------------------------------------------------------------------------
def test_settings_file_round_trips(tmp_path):
    f = tmp_path / "s.json"
    write_settings_file(
        f,
        engine={"cooc_window": 7, "fusion_lr": 0.01},
        index={"collection": "tuned"},
        about={"log": "x.jsonl"},
    )
    s = load_settings(f)
    assert (s.engine.cooc_window, s.engine.fusion_lr) == (7, 0.01)
    assert s.index.collection == "tuned"
    assert s.engine.k == EngineSettings().k  # untouched keys keep their defaults
    assert s.about["log"] == "x.jsonl" and s.path == str(f)


def test_precedence_overrides_then_environment_then_file(tmp_path, monkeypatch):
    f = tmp_path / "s.json"
    write_settings_file(f, engine={"cooc_window": 7, "k": 30})
    monkeypatch.setenv("VIDREC_ENGINE_K", "40")
    s = load_settings(f)
    assert (s.engine.cooc_window, s.engine.k) == (7, 40)  # env beats the file
    s = load_settings(f, engine={"k": 50, "cooc_window": 3})
    assert (s.engine.cooc_window, s.engine.k) == (3, 50)  # flags beat both
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(f))
    assert load_settings().engine.cooc_window == 7  # the file named by the variable


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"engine": {"cooc_windw": 3}}, "engine.cooc_windw: unknown setting"),
        ({"engine": {"cooc_window": 0}}, "engine.cooc_window: Input should be greater"),
        ({"engine": {"k": "many"}}, "engine.k: Input should be a valid integer"),
        ({"engin": {}}, "unknown section 'engin'"),
    ],
)
def test_bad_settings_files_name_the_key(tmp_path, doc, says):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(SettingsFileError, match=says):
        load_settings(f)


def test_a_file_that_is_not_json_names_the_line(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{\n  "engine": {"k": 3,}\n}')
    with pytest.raises(SettingsFileError, match="line 2"):
        load_settings(f)


def _list_lengths(path) -> set[int]:
    return {len(r.items) for r in read_log(path) if isinstance(r, Recommendations)}


def test_run_settings_changes_the_engine(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", "hashing")
    log = write_log(tmp_path / "log.jsonl", chain_log(n_chains=3, n_users=4))
    f = tmp_path / "s.json"
    write_settings_file(f, engine={"k": 3})
    base = ["run", log, "--quiet", "--no-eval", "--json", "--out"]
    assert main([*base, str(tmp_path / "a.jsonl"), "--settings", str(f)]) == 0
    assert _list_lengths(tmp_path / "a.jsonl") == {3}
    monkeypatch.setenv("VIDREC_ENGINE_K", "5")  # the environment beats the file
    assert main([*base, str(tmp_path / "b.jsonl"), "--settings", str(f)]) == 0
    assert _list_lengths(tmp_path / "b.jsonl") == {5}
    monkeypatch.delenv("VIDREC_ENGINE_K")
    f.write_text('{"engine": {"k": 0}}')
    with pytest.raises(SystemExit, match="engine.k"):
        main([*base, str(tmp_path / "c.jsonl"), "--settings", str(f)])


def test_worker_engine_reads_the_settings_file_of_the_environment(tmp_path, monkeypatch):
    from streams.worker.app import _default_engine

    f = tmp_path / "s.json"
    write_settings_file(f, engine={"k": 7, "fresh_slots": 0})
    monkeypatch.setenv("VIDREC_ENCODER_MODEL_PATH", "hashing")
    monkeypatch.setenv(SETTINGS_FILE_ENV, str(f))
    engine, index = _default_engine()
    try:
        assert (engine.settings.k, engine.cfg.fresh_slots) == (7, 0)
    finally:
        index.close()


# -- the tuner ---------------------------------------------------------------------------------
def test_space_skips_missing_fields_and_unused_event_types():
    space = (
        Knob("cooc_window", choices=(3, 5)),
        Knob("no_such_knob", 1, 2),
        Knob("weight_like", 1, 3),
    )
    keep, skipped = active_space(space, {"watch"})
    assert [k.name for k in keep] == ["cooc_window"]
    assert len(skipped) == 2 and "no_such_knob" in skipped[0] and "like" in skipped[1]


def test_trials_stay_in_their_ranges():
    rng = random.Random(0)
    knobs = [Knob("cooc_half_life_days", 1.0, 100.0, log=True), Knob("cooc_window", choices=(3, 5))]
    for _ in range(50):
        ov = sample_trial(knobs, EngineSettings(), rng)
        assert ov and set(ov) <= {"cooc_half_life_days", "cooc_window"}
        assert 1.0 <= ov.get("cooc_half_life_days", 14.0) <= 100.0
        assert ov.get("cooc_window", 3) in (3, 5)


def test_tuner_beats_a_bad_default_and_writes_a_file_that_loads(tmp_path):
    # co-counts that forget within seconds, on a log where only co-occurrence over hours helps
    bad = EngineSettings(cooc_half_life_days=1e-5)
    space = (Knob("cooc_half_life_days", choices=(1e-5, 30.0)), Knob("no_such_knob", 1, 2))
    progress = []
    result = tune(
        chain_log(n_users=80),
        HashingEncoder(),
        trials=2,
        finalists=1,
        base=bad,
        space=space,
        progress=progress.append,
    )
    assert result.best is not result.defaults
    assert result.changed == {"cooc_half_life_days": 30.0}
    held, ref = result.best.validation["heldout"], result.defaults.validation["heldout"]
    assert held["ndcg@10"] > ref["ndcg@10"] + 0.05
    assert result.skipped and "no_such_knob" in result.skipped[0]
    assert {p.stage for p in progress} >= {"validate"} and progress[-1].done == progress[-1].total
    f = tmp_path / "tuned.json"
    write_settings_file(f, engine=result.changed, about={"score": held})
    assert load_settings(f).engine.cooc_half_life_days == 30.0


def test_tune_command_writes_settings_table_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = write_log(tmp_path / "log.jsonl", chain_log(n_users=60))
    out, png = tmp_path / "s.json", tmp_path / "c.png"
    argv = ["tune", log, "--out", str(out), "--plot", str(png), "--trials", "1"]
    assert main([*argv, "--finalists", "1", "--workers", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| defaults" in text and "held-out HR@10" in text
    assert load_settings(out).about["made_by"] == "vidrec tune"
    assert png.read_bytes()[:4] == b"\x89PNG"
