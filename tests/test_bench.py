"""``vidrec bench`` on its tiny setting (``--quick``): it runs, and the table has every row.

The figures themselves are not checked against targets (that is what the benchmark is for);
only that each section measured something and reported it with its setting.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from streams.bench.kafka_io import Arrivals
from streams.bench.synthetic import ItemSampler, synthetic_events
from streams.cli import main
from streams.wire.settings import KafkaSettings
from streams.wire.topics import admin_client


def _run(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> dict[str, list[str]]:
    """Run ``vidrec bench --quick``; returns the printed table's rows by benchmark name."""
    assert main(["bench", "--quick", "--out", str(out), *args]) == 0
    printed = capsys.readouterr().out
    rows = {}
    for line in printed.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    table = (out / "bench.md").read_text(encoding="utf-8")
    for name in rows:
        assert f"| {name} |" in table
    assert re.search(r"load average [0-9.]+", printed)
    return rows


def _number(figure: str) -> float:
    return float(re.search(r"-?[0-9][0-9,]*\.?[0-9]*", figure).group(0).replace(",", ""))


def test_engine_and_memory_rows(capsys, tmp_path):
    rows = _run(capsys, tmp_path, "--only", "engine,memory", "--sizes", "500,1000")
    for n in ("500", "1,000"):
        figure, _target, setting = rows[f"embedded engine, {n} videos, fresh top-20 per event"]
        assert figure.endswith("events/s") and _number(figure) > 0
        assert "events timed" in setting and "p50/p99" in setting
    user = rows["state per user (engine)"]
    video = rows["state per video beyond its vector (engine)"]
    assert _number(user[0]) > 0 and user[1].startswith("<= 2 KB: ")
    assert _number(video[0]) > 0 and video[1].startswith("<= 4 KB: ")
    rss = rows["RSS over the replay"]
    assert rss[0].count("->") == 2 and "20,000 synthetic events" in rss[2]
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    samples = re.search(r"RSS over the replay \(events, MiB\): (.*)", md)
    assert samples and len(samples.group(1).split(", ")) >= 5
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_index_rows(capsys, tmp_path):
    rows = _run(capsys, tmp_path, "--only", "index")
    for case in ("seen", "seen+fresh"):
        figure, _target, setting = rows[f"HNSW recall@50 vs exact, {case} filter, 1,000 videos"]
        assert 0.0 < _number(figure) <= 1.0 and "ms per search vs exact" in setting
    assert list(tmp_path.glob("ann-vectors-*-hashing.npz"))  # the vectors are cached


def test_visual_rows(capsys, tmp_path):
    rows = _run(capsys, tmp_path, "--only", "visual")
    for size in ("480x360", "1280x720"):
        figure, target, setting = rows[f"visual descriptor, {size} JPEG"]
        assert figure.endswith("ms/video") and _number(figure) > 0
        assert target.startswith("<= 5 ms: ") and "10 JPEGs" in setting


def test_unknown_section_is_refused(capsys, tmp_path):
    assert main(["bench", "--only", "engine,gpu", "--out", str(tmp_path)]) == 2
    assert "gpu" in capsys.readouterr().err


@pytest.mark.slow
def test_encoder_and_sample_rows(capsys, tmp_path):
    rows = _run(capsys, tmp_path, "--only", "encoder,sample")
    for label in ("fp32", "int8"):
        figure = next(v for k, v in rows.items() if k.startswith(f"encoder {label} ("))
        assert figure[0].endswith("titles/s") and _number(figure[0]) > 0
    assert rows["encoder int8 / fp32"][0].startswith("x")
    sample = rows["embedded engine on the shipped sample, fresh top-20"]
    assert _number(sample[0]) > 0
    assert rows["the same with metadata features / without (issue 16)"][0].startswith("x")


@pytest.mark.kafka
def test_streaming_and_freshness_rows(capsys, tmp_path, kafka_settings: KafkaSettings):
    def bench_topics() -> set[str]:
        admin = admin_client(kafka_settings)
        try:
            return {t for t in admin.list_topics() if t.startswith("bench-")}
        finally:
            admin.close()

    before = bench_topics()
    rows = _run(capsys, tmp_path, "--only", "streaming,freshness")
    assert _number(rows["raw aiokafka passthrough (consume + produce)"][0]) > 0
    one = rows["1 worker, a Recommendations per accepted event"]
    assert "300/300 events" in one[2]  # every event got its list
    assert _number(rows["1 worker / passthrough"][0]) > 0
    assert "300/300 events" in rows["2 workers"][2]
    p50 = next(v for k, v in rows.items() if k.startswith("event produced -> list received, p50"))
    p99 = next(v for k, v in rows.items() if k.startswith("event produced -> list received, p99"))
    assert 0 < _number(p50[0]) <= _number(p99[0])
    video = next(v for k, v in rows.items() if k.startswith("video produced -> found"))
    assert "100/100 videos" in video[2]
    assert _number(rows["embed agent / raw encoder throughput"][0]) > 0
    assert bench_topics() <= before  # the run deleted its own topics


# -- the synthetic data the benchmarks run on ------------------------------------------------------
def test_item_sampler_is_zipf_over_a_shuffled_catalogue():
    rng = np.random.default_rng(0)
    sampler = ItemSampler(1000, rng)
    counts = np.bincount(sampler.draw(50_000), minlength=1000)
    ranked = counts[sampler.order]  # by popularity rank
    assert ranked[0] > 5 * ranked[100] > 0  # Zipf(1): rank 1 about 100x rank 100
    assert counts.argmax() == sampler.order[0]
    assert not np.array_equal(sampler.order, np.arange(1000))  # popularity is not the id order


def test_synthetic_events_validate_and_keep_their_order():
    from schemas import UserEvent, decode

    rng = np.random.default_rng(1)
    events = synthetic_events(
        np.array([3, 1, 2]), np.array([0, 0, 1]), rng, serial=7, validate=True
    )
    assert [e.event_id for e in events] == ["e7", "e8", "e9"]
    assert [e.video_id for e in events] == ["v3", "v1", "v2"]
    assert events[0].ts < events[1].ts < events[2].ts
    for e in events:
        assert decode(e.to_json(), expect=UserEvent) == e


def test_sustained_rate_ignores_the_ramp():
    arrivals = Arrivals(times=[0.0] * 5 + [10.0 + i / 100 for i in range(100)], started=0.0)
    # the steady part arrives at 100 records/s; the first five came long before it
    assert arrivals.sustained() == pytest.approx(100.0, rel=0.05)
