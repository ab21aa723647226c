"""Typed settings of the wire: how to reach the Kafka cluster (``VIDREC_KAFKA_...``).

Every producer, consumer, admin client and the faust app receives a ``KafkaSettings`` object
instead of reading a broker address from a module global, so tests can point one process at
several brokers and credentials never appear in code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """Connection to the Kafka cluster (``VIDREC_KAFKA_...``).

    The defaults reach the local single-node broker of ``vidrec kafka up``; a managed cluster
    needs ``VIDREC_KAFKA_BOOTSTRAP_SERVERS`` and usually ``VIDREC_KAFKA_SECURITY_PROTOCOL=SASL_SSL``
    with a mechanism, user name and password.
    """

    model_config = SettingsConfigDict(env_prefix="VIDREC_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        min_length=1,
        description="Comma-separated host:port list (VIDREC_KAFKA_BOOTSTRAP_SERVERS).",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="VIDREC_KAFKA_SECURITY_PROTOCOL."
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description="SASL mechanism when the protocol is SASL_* (VIDREC_KAFKA_SASL_MECHANISM).",
    )
    sasl_username: str | None = Field(default=None, description="VIDREC_KAFKA_SASL_USERNAME.")
    sasl_password: SecretStr | None = Field(default=None, description="VIDREC_KAFKA_SASL_PASSWORD.")
    ssl_cafile: str | None = Field(
        default=None,
        description="CA bundle that signed the brokers' certificates; None = system CAs "
        "(VIDREC_KAFKA_SSL_CAFILE).",
    )

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        """Fail at start-up, not at the first connection, when SASL is half configured."""
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_protocol {self.security_protocol} needs "
                    + ", ".join(f"VIDREC_KAFKA_{m.upper()}" for m in missing)
                )
        return self

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list of ``host:port`` strings."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for any kafka-python client (producer, consumer, admin).

        Only the connection options are set, so callers add their own tuning on top; the
        password is unwrapped here and nowhere else.
        """
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.ssl_cafile and self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_cafile"] = self.ssl_cafile
        return kwargs
