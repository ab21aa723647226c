"""The real dev data (``vidrec data fetch movielens``): fetched from Debian, without R, verified.

MovieLens "latest-small" (October 2016, 100,004 ratings) ships in Debian's ``r-cran-dslabs`` as
the R object ``dslabs::movielens`` inside an R lazy-load database; the PyPI package ``rdata``
reads it. The CSV written is byte for byte the one the project was developed on (its SHA-256 is
checked), so figures measured on it can be reproduced anywhere ``apt-get`` works.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tempfile
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RDataset:
    """A data frame in a Debian package's R lazy-load database, and the CSV it must give."""

    package: str
    version: str
    database: str  # path inside the package, without .rdx/.rdb
    variable: str
    filename: str
    sha256: str  # of the uncompressed CSV


MOVIELENS = RDataset(
    package="r-cran-dslabs",
    version="0.7.4-1",
    database="usr/lib/R/site-library/dslabs/data/Rdata",
    variable="movielens",
    filename="movielens-latest-small-2016.csv.gz",
    sha256="f4cef4c9af44f704e6da67116f9509a0fd8c577025803901e4b27479b112ef1c",
)
DATASETS = {"movielens": MOVIELENS}


class FetchError(RuntimeError):
    """A fetch that cannot go on; the message is the one line the user sees."""


def _rdata() -> Any:
    try:
        import rdata
    except ImportError:
        raise FetchError(
            "reading the R data needs the rdata package: pip install 'vidrec[data]'"
        ) from None
    return rdata


def _parse(rdata: Any, raw: bytes) -> Any:
    with warnings.catch_warnings():  # an .rdx is a gzipped RDS under another name
        warnings.simplefilter("ignore", UserWarning)
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def read_lazyload(database: Path, variable: str) -> Any:
    """One object of an R lazy-load database (``<database>.rdx`` index, ``.rdb`` blocks).

    The index is a gzipped R serialization whose ``variables`` entry gives each object's
    (offset, length) in the ``.rdb``; a block is a 4-byte big-endian length then a zlib stream
    (R's ``compressed = TRUE``; bzip2 and xz databases are not handled).
    """
    rdata = _rdata()
    rdx = database.with_suffix(".rdx")
    rdb = database.with_suffix(".rdb")
    try:
        index = _parse(rdata, gzip.decompress(rdx.read_bytes()))
        offset, length = (int(x) for x in index["variables"][variable])
        with open(rdb, "rb") as f:
            f.seek(offset)
            block = f.read(length)
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise FetchError(f"{rdx}: no readable entry {variable!r} ({exc})") from None
    compressed = int(np.asarray(index.get("compressed", 1)).flat[0])  # R: TRUE or 1-3
    if compressed != 1:
        raise FetchError(f"{rdb}: compression type {compressed} is not zlib")
    try:
        raw = zlib.decompress(block[4:])
    except zlib.error as exc:
        raise FetchError(f"{rdb}: block of {variable!r} is not zlib data ({exc})") from None
    if int.from_bytes(block[:4], "big") != len(raw):
        raise FetchError(f"{rdb}: block of {variable!r} has the wrong length")
    return _parse(rdata, raw)


def frame_to_csv(frame: Any) -> bytes:
    """The CSV the project uses: header, no index, missing values empty, minimal quoting, LF."""
    return frame.to_csv(index=False, na_rep="", lineterminator="\n").encode()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def download_deb(ds: RDataset, into: Path) -> Path:
    """``apt-get download`` the package (the pinned version first, else the one apt offers)."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(
                f"{tool} not found: fetching {ds.package} needs a Debian or Ubuntu system "
                "(or copy the CSV from a machine that has one)"
            )
    for spec in (f"{ds.package}={ds.version}", ds.package):
        done = _run(["apt-get", "download", spec], into)
        debs = sorted(into.glob(f"{ds.package}_*.deb"))
        if done.returncode == 0 and debs:
            return debs[0]
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise FetchError(f"apt-get download {ds.package} failed: {last} (try apt-get update)")


def fetch(ds: RDataset, out_dir: Path, *, log: Any = print) -> Path:
    """Write ``out_dir/<ds.filename>`` and return its path; raises ``FetchError``.

    A file already there with the right checksum is kept. The CSV is checked before it is
    written, so a mismatch leaves nothing behind.
    """
    dst = out_dir / ds.filename
    if _verified(dst, ds.sha256):
        log(f"{dst} is already there (SHA-256 verified)")
        return dst
    _rdata()  # fail before downloading anything
    with tempfile.TemporaryDirectory(prefix="vidrec-fetch-") as tmp:
        tmpdir = Path(tmp)
        deb = download_deb(ds, tmpdir)
        log(f"downloaded {deb.name}")
        done = _run(["dpkg-deb", "-x", str(deb), "pkg"], tmpdir)
        if done.returncode != 0:
            raise FetchError(f"dpkg-deb -x {deb.name} failed: {done.stderr.strip()}")
        frame = read_lazyload(tmpdir / "pkg" / ds.database, ds.variable)
    data = frame_to_csv(frame)
    digest = hashlib.sha256(data).hexdigest()
    if digest != ds.sha256:
        raise FetchError(
            f"{deb.name} gave a CSV with SHA-256 {digest}, not the expected {ds.sha256} "
            f"({len(frame)} rows); nothing written"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")
    # mtime 0: the same CSV gives the same .gz bytes
    with gzip.GzipFile(part, "wb", mtime=0) as f:
        f.write(data)
    part.replace(dst)
    log(f"wrote {dst}: {len(frame)} rows, SHA-256 of the CSV verified")
    return dst


def _verified(path: Path, sha256: str) -> bool:
    try:
        return hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == sha256
    except (OSError, EOFError):  # absent, unreadable or a truncated download: fetch again
        return False
