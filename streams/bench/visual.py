"""The thumbnail descriptor's cost: ``vidrec bench --only visual``.

Per video: decode (Pillow, JPEG draft mode) + HOG + HSV histogram, on generated JPEGs of the two
usual thumbnail sizes (480x360, YouTube's ``hqdefault``; 1280x720, ``maxresdefault``). Target
(issue 16): at most 5 ms a video on this machine. The JPEGs are smooth colour fields with
noise and edges, about the size in bytes of real thumbnails at quality 85.
"""

from __future__ import annotations

import io
import time

import numpy as np

from streams.bench.report import Row, pct

SIZES = ((480, 360), (1280, 720))
TARGET_MS = 5.0


def thumbnails(w: int, h: int, n: int, seed: int = 0) -> list[bytes]:
    """``n`` JPEGs of ``w`` x ``h``: a blurred random colour field, stripes and noise."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = rng.integers(0, 256, (h // 24 + 1, w // 24 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC)
        px = np.asarray(img, dtype=np.int16)
        px[:, :: max(1, w // int(rng.integers(6, 30)))] //= 2  # some hard edges
        px += rng.normal(0, 6, px.shape).astype(np.int16)
        img = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).filter(ImageFilter.SMOOTH)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def bench_visual(n: int, reps: int = 3) -> list[Row]:
    """One row per size: ms per video (median of the best of ``reps`` passes), p99 beside."""
    from workers.thumbnails import VISUAL_DIM, describe_bytes

    rows = []
    for w, h in SIZES:
        data = thumbnails(w, h, n)
        describe_bytes(data[0])  # warm-up (imports, first-call setup)
        best = np.full(n, np.inf)
        for _ in range(reps):
            for i, d in enumerate(data):
                t0 = time.perf_counter()
                describe_bytes(d)
                best[i] = min(best[i], (time.perf_counter() - t0) * 1000)
        p50 = float(np.median(best))
        kb = sum(len(d) for d in data) / len(data) / 1024
        rows.append(
            Row("visual", f"visual descriptor, {w}x{h} JPEG", f"{p50:.2f} ms/video",
                f"{n} JPEGs of ~{kb:.0f} kB, decode + HOG + HSV histogram ({VISUAL_DIM} values), "
                f"best of {reps}; p99 {pct(list(best), 99):.2f} ms",
                f"<= {TARGET_MS:g} ms", p50 <= TARGET_MS)
        )  # fmt: skip
    return rows
