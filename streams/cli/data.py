"""``vidrec data fetch``: download and verify a real data set for development."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.imports.datasets import DATASETS, FetchError, fetch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch real interaction data for development")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    f = dsub.add_parser(
        "fetch",
        help="download and verify a data set",
        description="movielens: MovieLens latest-small (Oct 2016, 100,004 ratings; GroupLens "
        "terms: research use, no commercial use, cite Harper & Konstan 2015) from Debian's "
        "r-cran-dslabs, via apt-get and the rdata package; the CSV's SHA-256 is verified. "
        "Turn it into an event log with `vidrec import`.",
    )
    f.add_argument("dataset", choices=sorted(DATASETS))
    f.add_argument("--out", default="data", help="folder to write into (default: ./data)")
    f.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    try:
        fetch(DATASETS[args.dataset], Path(args.out), log=lambda m: print(m, file=sys.stderr))
    except (FetchError, OSError) as exc:
        print(f"vidrec data fetch: {exc}", file=sys.stderr)
        return 1
    return 0
