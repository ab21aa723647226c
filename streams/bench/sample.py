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
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.inprocess import CachedEncoder, drive
    from workers.settings import EncoderSettings, EngineSettings, IndexSettings

    msgs = [m for n, m in enumerate(read_log(path)) if not events or n < events]
    model_path = "hashing" if encoder_name == "hashing" else None
    encoder = CachedEncoder(load_encoder(EncoderSettings(model_path=model_path)))
    with tempfile.TemporaryDirectory(prefix="vidrec-bench-") as tmp:
        # Embed first, so that the replay measures the engine, not the encoder.
        encoder.encode_many([m.text() for m in msgs if getattr(m, "kind", "") == "video"])
        index = VideoIndex(IndexSettings(path=str(Path(tmp) / "q")), dim=encoder.dim)
        engine = Engine(EngineSettings(), encoder, index)
        stats = drive(msgs, engine)
        backend = index.backend
        index.close()
    s = stats.summary()
    k = engine.settings.k
    return [
        Row(
            "sample",
            f"embedded engine on the shipped sample, fresh top-{k}",
            f"{s['events'] / stats.seconds:,.0f} events/s",
            f"{s['events']} events, {s['videos']} videos (upserts included), encoder "
            f"{encoder.name}, Qdrant {backend}; "
            f"p50/p99 {s['latency_p50_ms']}/{s['latency_p99_ms']} ms per event",
        )
    ]
