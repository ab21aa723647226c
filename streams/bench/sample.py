"""The ``sample`` section: the embedded engine replaying the shipped sample (real behaviour)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from streams.bench.report import Row

# workers.* (torch, qdrant) is imported inside the functions: `vidrec --help` loads this module.


def bench_sample(path: str, events: int, encoder_name: str = "minilm") -> list[Row]:
    """The engine replaying the shipped sample (the videos embedded before the clock starts)."""
    from streams.wire.eventlog import read_log
    from workers.encoder import load_encoder
    from workers.index import VideoIndex
    from workers.inprocess import CachedEncoder, drive, make_engine
    from workers.settings import EncoderSettings, EngineSettings, IndexSettings

    msgs = [m for n, m in enumerate(read_log(path)) if not events or n < events]
    model_path = "hashing" if encoder_name == "hashing" else None
    encoder = CachedEncoder(load_encoder(EncoderSettings(model_path=model_path)))
    runs = {}
    with tempfile.TemporaryDirectory(prefix="vidrec-bench-") as tmp:
        # Embed first, so that the replay measures the engine, not the encoder.
        encoder.encode_many([m.text() for m in msgs if getattr(m, "kind", "") == "video"])
        # the hybrid without its metadata features (issue 16) first, warming what both load
        for name in ("hybrid-no-metadata", "hybrid"):
            index = VideoIndex(IndexSettings(path=str(Path(tmp) / name)), dim=encoder.dim)
            engine = make_engine(name, EngineSettings(), encoder, lambda index=index: index)
            runs[name] = (drive(msgs, engine), index.backend)
            index.close()
    stats, backend = runs["hybrid"]
    s = stats.summary()
    k = engine.settings.k
    rate = s["events"] / stats.seconds
    plain = runs["hybrid-no-metadata"][0]
    plain_rate = plain.summary()["events"] / plain.seconds
    return [
        Row(
            "sample",
            f"embedded engine on the shipped sample, fresh top-{k}",
            f"{rate:,.0f} events/s",
            f"{s['events']} events, {s['videos']} videos (upserts included), encoder "
            f"{encoder.name}, Qdrant {backend}; "
            f"p50/p99 {s['latency_p50_ms']}/{s['latency_p99_ms']} ms per event",
        ),
        Row(
            "sample",
            "the same with metadata features / without (issue 16)",
            f"x{rate / plain_rate:.2f}",
            f"without: {plain_rate:,.0f} events/s, p50/p99 "
            f"{plain.summary()['latency_p50_ms']}/{plain.summary()['latency_p99_ms']} ms; "
            "same run, without first",
        ),
    ]
