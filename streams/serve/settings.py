"""Typed settings of ``vidrec serve`` (``VIDREC_SERVE_...``): where it listens, its API key and
the request-time defaults.

Connection to Kafka and the topic names come from the same settings as every other component
(``VIDREC_KAFKA_...``, ``VIDREC_TOPIC_...``), so a server reads the topics its workers write.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServeSettings(BaseSettings):
    """The HTTP server (``VIDREC_SERVE_...``).

    ``api_key``, when set, is required on every route but ``/healthz``, ``/readyz`` and
    ``/metrics`` (what orchestrators and Prometheus call without credentials), as
    ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The page shell (``/``,
    ``/static/...``) and the API description (``/openapi.json``, ``/docs``) hold no data and
    stay open, so a browser can load them; the data they fetch needs the key.
    """

    model_config = SettingsConfigDict(env_prefix="VIDREC_SERVE_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address to bind (VIDREC_SERVE_HOST).")
    port: int = Field(default=8000, ge=0, le=65535, description="VIDREC_SERVE_PORT; 0 = any.")
    api_key: SecretStr | None = Field(
        default=None,
        description="Required key of the API, at least 16 characters; unset = no auth "
        "(VIDREC_SERVE_API_KEY).",
    )
    k: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Items per response when the request gives no k (VIDREC_SERVE_K). The "
        "workers publish VIDREC_ENGINE_K (20) per list, so filters have spare items to drop.",
    )
    max_k: int = Field(default=100, ge=1, le=1000, description="Largest k a request may ask.")
    trending_size: int = Field(
        default=50, ge=1, le=1000, description="Items of GET /trending and of the trending fill."
    )
    similar_cooc_weight: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Weight of co-occurrence against content cosine in GET /videos/{id}/similar.",
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="How long the broker holds the store's fetch while no record is there "
        "(VIDREC_SERVE_FETCH_MAX_WAIT_MS). A new record ends the wait at once (fetch_min_bytes "
        "is 1), so it does not delay a list; a short wait only costs CPU (5 ms: 200 empty "
        "fetches a second, which doubled the server's CPU per request at 200 requests/s).",
    )
    board_history_s: float = Field(
        default=600.0, gt=0, description="Seconds of dashboard history kept (one point a second)."
    )
    access_log: bool = Field(default=False, description="uvicorn's access log (one line a call).")

    @model_validator(mode="after")
    def _key_is_long_enough(self) -> ServeSettings:
        """A short key can be guessed by trying; refuse it at start-up, not in production."""
        if self.api_key is not None and len(self.api_key) < 16:
            raise ValueError("VIDREC_SERVE_API_KEY must be at least 16 characters")
        return self
