"""Thumbnails: read a video's ``thumbnail_url`` into a compact visual descriptor.

The descriptor is the seed's classical pair: HOG of a small grayscale copy (shape, layout) and a
colour histogram in HSV (palette), each part L2-normalised, concatenated and L2-normalised, so
the cosine of two descriptors weighs shape and colour alike. It costs about a millisecond or two
a video (``vidrec bench --only visual``): JPEG draft mode decodes at 1/2 to 1/8 scale.

A thumbnail is an extra, never a reason to lose or hold up a video. ``ThumbnailReader`` fetches
a batch concurrently under ONE deadline (``timeout_s``); anything missing, unreadable, too big,
late, or from a host that keeps failing comes back as ``None`` (the video goes on with text
alone), is counted by outcome, and each kind of failure is logged once, not once per video.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import numpy as np
from PIL import Image, UnidentifiedImageError
from skimage.feature import hog

from workers.settings import ThumbnailSettings

log = logging.getLogger(__name__)

# The descriptor's layout. SIDE x SIDE grayscale, 16-pixel cells, 2x2-cell blocks, 9 orientation
# bins: 3 x 3 blocks x 4 cells x 9 = 324 HOG values; then hue x saturation x value bins.
SIDE = 64
HOG_CELL = 16
HOG_ORIENTATIONS = 9
HOG_DIM = ((SIDE // HOG_CELL) - 1) ** 2 * 4 * HOG_ORIENTATIONS
HSV_BINS = (8, 4, 4)
HSV_DIM = HSV_BINS[0] * HSV_BINS[1] * HSV_BINS[2]
VISUAL_DIM = HOG_DIM + HSV_DIM  # 452

OUTCOMES = ("ok", "missing", "failed", "too_large", "timeout", "skipped")


class ThumbnailError(Exception):
    """Why one thumbnail gave no descriptor; ``outcome`` is one of ``OUTCOMES``."""

    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome


def describe_image(img: Image.Image) -> np.ndarray:
    """The visual descriptor (``VISUAL_DIM`` float32, unit norm) of a decoded image."""
    small = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    gray = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
    shape = hog(
        gray,
        orientations=HOG_ORIENTATIONS,
        pixels_per_cell=(HOG_CELL, HOG_CELL),
        cells_per_block=(2, 2),
        block_norm="L2-Hys",
        feature_vector=True,
    ).astype(np.float32)
    hsv = np.asarray(small.convert("HSV"), dtype=np.int32).reshape(-1, 3)
    hb, sb, vb = HSV_BINS
    code = (
        ((hsv[:, 0] * hb) >> 8) * (sb * vb) + ((hsv[:, 1] * sb) >> 8) * vb + ((hsv[:, 2] * vb) >> 8)
    )
    # square root of the shares (Hellinger): the cosine of two histograms then compares them
    # as distributions instead of being ruled by the largest bin
    colour = np.sqrt(np.bincount(code, minlength=HSV_DIM).astype(np.float32))
    out = np.concatenate([_unit(shape), _unit(colour)])
    return _unit(out)


def describe_bytes(data: bytes, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """Decode an image file's bytes and describe it; ``ThumbnailError`` when it cannot be."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ThumbnailError("too_large", f"{w}x{h} pixels, over max_pixels {max_pixels}")
            img.draft("RGB", (SIDE, SIDE))  # JPEG: decode at a reduced scale
            return describe_image(img)
    except Image.DecompressionBombError as exc:
        raise ThumbnailError("too_large", str(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ThumbnailError("failed", f"not a readable image: {exc}") from None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class HostBreaker:
    """Skip a host after ``failures`` consecutive failed fetches, for ``cool_s`` seconds.

    So a log full of URLs on an unreachable host costs a few failed fetches per ``cool_s``, not
    one per video. After the pause one fetch is let through; a success closes the breaker.
    """

    def __init__(self, failures: int = 3, cool_s: float = 60.0) -> None:
        self.failures = failures
        self.cool_s = cool_s
        self._lock = threading.Lock()
        self._fails: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def allows(self, host: str) -> bool:
        with self._lock:
            until = self._open_until.get(host)
            if until is None:
                return True
            if time.monotonic() < until:
                return False
            del self._open_until[host]  # half-open: the next fetch decides
            self._fails[host] = self.failures - 1
            return True

    def record(self, host: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._fails.pop(host, None)
                return
            n = self._fails.get(host, 0) + 1
            self._fails[host] = n
            if n >= self.failures:
                self._open_until[host] = time.monotonic() + self.cool_s


class ThumbnailReader:
    """Fetch and describe thumbnails in batches, under a deadline, never raising for a bad one.

    ``thumbnail_url`` may be a local path, a ``file://`` URL or ``http(s)://``. Local files are
    read by the worker itself, as any path in its own configuration would be: only a
    descriptor ever comes out of one. ``counts`` holds the outcomes so far (``OUTCOMES``).
    Descriptors and permanent failures are cached by URL (``cache_size``), so replaying a log
    several times in one process fetches each thumbnail once; timeouts and skips are not
    cached, they are tried again next time.
    """

    def __init__(self, settings: ThumbnailSettings | None = None) -> None:
        self.settings = s = settings or ThumbnailSettings()
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.breaker = HostBreaker(s.breaker_failures, s.breaker_s)
        self._pool = ThreadPoolExecutor(s.threads, thread_name_prefix="thumbnails")
        self._http = httpx.Client(
            follow_redirects=True,
            timeout=s.timeout_s,
            limits=httpx.Limits(max_connections=s.threads),
            headers={"Accept": "image/*"},
        )
        self._cache: OrderedDict[str, tuple[str, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._logged: set[str] = set()

    # -- the batch ---------------------------------------------------------------------------
    def read_many(self, urls: Sequence[str | None]) -> list[np.ndarray | None]:
        """One descriptor (or ``None``) per URL, all within ``timeout_s`` of the call."""
        deadline = time.monotonic() + self.settings.timeout_s
        out: list[np.ndarray | None] = [None] * len(urls)
        futures: dict[str, Future[tuple[str, np.ndarray | None, str]]] = {}
        pending: list[tuple[int, str]] = []
        for i, url in enumerate(urls):
            if not url or not url.strip():
                self._count("missing", "")
                continue
            hit = self._cached(url)
            if hit is not None:
                self._count(hit[0], url)
                out[i] = hit[1]
                continue
            if not self.breaker.allows(_host(url)):
                self._count("skipped", url, "its host failed repeatedly")
                continue
            if url not in futures:
                futures[url] = self._pool.submit(self._fetch, url, deadline)
            pending.append((i, url))
        if futures:
            wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        for i, url in pending:
            fut = futures[url]
            if not fut.done():
                fut.cancel()  # not started yet: it never will; a running fetch ends by itself
                self._count("timeout", url, f"no image within {self.settings.timeout_s} s")
                continue
            outcome, desc, reason = fut.result()
            self._count(outcome, url, reason)
            if outcome in ("ok", "failed", "too_large"):
                self._remember(url, outcome, desc)
            out[i] = desc
        return out

    def read(self, url: str | None) -> np.ndarray | None:
        return self.read_many([url])[0]

    # -- one fetch (a pool thread) -----------------------------------------------------------
    def _fetch(self, url: str, deadline: float) -> tuple[str, np.ndarray | None, str]:
        try:
            return self._fetch_one(url, deadline)
        except Exception as exc:  # a decoder's surprise is one bad thumbnail, not a batch's
            return "failed", None, f"{type(exc).__name__}: {exc}"

    def _fetch_one(self, url: str, deadline: float) -> tuple[str, np.ndarray | None, str]:
        host = _host(url)
        if time.monotonic() >= deadline:
            return "timeout", None, "the batch's deadline passed before the fetch started"
        if host and not self.breaker.allows(host):
            return "skipped", None, "its host failed repeatedly"
        try:
            data = self._bytes(url, deadline)
        except ThumbnailError as exc:
            if host and exc.outcome in ("failed", "timeout"):
                self.breaker.record(host, False)
            return exc.outcome, None, str(exc)
        if host:
            self.breaker.record(host, True)
        try:
            return "ok", describe_bytes(data, self.settings.max_pixels), ""
        except ThumbnailError as exc:
            return exc.outcome, None, str(exc)

    def _bytes(self, url: str, deadline: float) -> bytes:
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("http", "https"):
            return self._http_bytes(url, deadline)
        if scheme == "file":
            return self._file_bytes(Path(unquote(urlsplit(url).path)))
        if scheme and len(scheme) > 1:  # "C:" is a Windows drive, not a scheme
            raise ThumbnailError("failed", f"unsupported scheme {scheme!r}")
        return self._file_bytes(Path(url))

    def _file_bytes(self, path: Path) -> bytes:
        cap = self.settings.max_bytes
        try:
            with path.open("rb") as f:
                data = f.read(cap + 1)
        except OSError as exc:
            raise ThumbnailError("failed", f"cannot read the file: {exc}") from None
        if len(data) > cap:
            raise ThumbnailError("too_large", f"over max_bytes {cap}")
        return data

    def _http_bytes(self, url: str, deadline: float) -> bytes:
        cap = self.settings.max_bytes
        left = deadline - time.monotonic()
        buf = bytearray()
        try:
            with self._http.stream("GET", url, timeout=max(0.01, left)) as resp:
                if resp.status_code != 200:
                    raise ThumbnailError("failed", f"HTTP {resp.status_code}")
                size = resp.headers.get("content-length", "")
                if size.isdigit() and int(size) > cap:
                    raise ThumbnailError("too_large", f"Content-Length {size} over max_bytes {cap}")
                for chunk in resp.iter_bytes(64 * 1024):
                    buf += chunk
                    if len(buf) > cap:
                        raise ThumbnailError("too_large", f"over max_bytes {cap}")
                    if time.monotonic() > deadline:
                        raise ThumbnailError("timeout", "still arriving at the deadline")
        except httpx.TimeoutException as exc:
            raise ThumbnailError("timeout", f"{type(exc).__name__}") from None
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise ThumbnailError("failed", f"{type(exc).__name__}: {exc}") from None
        return bytes(buf)

    # -- counts, log, cache ------------------------------------------------------------------
    def _count(self, outcome: str, url: str, reason: str = "") -> None:
        with self._lock:
            self.counts[outcome] += 1
            first = outcome not in self._logged and outcome != "ok"
            self._logged.add(outcome)
        if first:
            level = logging.INFO if outcome == "missing" else logging.WARNING
            log.log(
                level,
                "thumbnails: %s (e.g. %r%s); such videos are indexed by text alone; "
                "logged once, then only counted (a worker's vidrec_thumbnails_total)",
                outcome,
                url[:200] if url else "no thumbnail_url",
                f": {reason}" if reason else "",
            )

    def _cached(self, url: str) -> tuple[str, np.ndarray | None] | None:
        with self._lock:
            hit = self._cache.get(url)
            if hit is not None:
                self._cache.move_to_end(url)
            return hit

    def _remember(self, url: str, outcome: str, desc: np.ndarray | None) -> None:
        cap = self.settings.cache_size
        if cap == 0:
            return
        with self._lock:
            self._cache[url] = (outcome, desc)
            self._cache.move_to_end(url)
            while len(self._cache) > cap:
                self._cache.popitem(last=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> ThumbnailReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _host(url: str) -> str:
    """The host a breaker keys on ('' for local files, which have none)."""
    parts = urlsplit(url)
    return parts.netloc.lower() if parts.scheme.lower() in ("http", "https") else ""
