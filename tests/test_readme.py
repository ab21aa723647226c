"""The README's examples run (docs that drift fail CI), and its first screen holds the commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streams.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_examples_run(code):
    exec(compile(code, str(README), "exec"), {})


def test_first_screen_has_the_two_commands():
    head = README.read_text().split("---")[0]
    cmds = [b.strip() for b in _blocks("bash") if b.strip() in head]
    assert cmds[0] == "pip install -e . && vidrec run"
    assert "python -m pytest" in cmds[1] and "vidrec kafka up" in cmds[1]


@pytest.mark.slow
def test_vidrec_run_on_the_shipped_sample_prints_a_summary(tmp_path, capsys):
    """The main job of the first screen, on the first lines of the shipped sample."""
    out = tmp_path / "recs.jsonl"
    assert main(["run", "--limit", "4000", "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["run"]["events"] > 2000
    assert summary["run"]["published"] == summary["run"]["events"] - summary["run"]["duplicates"]
    assert summary["evaluation"]["events"] > 100
    lines = out.read_text().splitlines()
    assert len(lines) == summary["run"]["published"]
    # the recommendations file scores the same through `vidrec evaluate LOG RECS`
    from streams.cli.evaluate import evaluate_files
    from streams.sample import default_sample_path

    again = evaluate_files(str(default_sample_path()), str(out), limit=4000)
    assert again["hr@10"] == pytest.approx(summary["evaluation"]["hr@10"])
