"""The synthetic video-platform sample: its generator (``generator``), and the shipped copy.

Importing this package is cheap; the generator (numpy, a large vocabulary) loads only when
``streams.sample.generator`` is imported.
"""

from pathlib import Path


def default_sample_path() -> Path:
    """The shipped sample (``vidrec sample`` with its defaults), packaged with ``streams``."""
    return Path(__file__).resolve().parent / "sample.jsonl.gz"
