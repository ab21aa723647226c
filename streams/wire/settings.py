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
    ssl_certfile: str | None = Field(
        default=None,
        description="Client certificate (PEM) for brokers that require mutual TLS "
        "(VIDREC_KAFKA_SSL_CERTFILE).",
    )
    ssl_keyfile: str | None = Field(
        default=None,
        description="Private key of ssl_certfile when it is not in the same file "
        "(VIDREC_KAFKA_SSL_KEYFILE).",
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
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("VIDREC_KAFKA_SSL_KEYFILE needs VIDREC_KAFKA_SSL_CERTFILE")
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
                kwargs["sasl_plain_password"] = _Unprintable(self.sasl_password.get_secret_value())
        if self.security_protocol in ("SSL", "SASL_SSL"):
            if self.ssl_cafile:
                kwargs["ssl_cafile"] = self.ssl_cafile
            if self.ssl_certfile:
                kwargs["ssl_certfile"] = self.ssl_certfile
            if self.ssl_keyfile:
                kwargs["ssl_keyfile"] = self.ssl_keyfile
        return kwargs


class _Unprintable(str):
    """A secret string that still works as a ``str`` but whose ``repr`` is masked.

    kafka-python's admin client logs its whole configuration at DEBUG (``%s`` of the kwargs
    dict, which shows each value's ``repr``); this keeps the password out of that line.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'**********'"


class PrivacySettings(BaseSettings):
    """How user ids are protected before they reach Kafka (``VIDREC_PSEUDONYMISE_KEY``).

    With a key set, ``vidrec ingest``, ``replay`` and ``forget`` (and every ``Sender``) replace
    each ``user_id`` by its HMAC-SHA256 pseudonym (see ``streams.wire.privacy``), so raw ids never
    reach a topic, a worker's state or a recommendation. Keep the key stable: a new key gives
    every user a new pseudonym, and ``vidrec forget`` with it can no longer reach the old one.
    """

    model_config = SettingsConfigDict(env_prefix="VIDREC_", extra="ignore")

    pseudonymise_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of user-id pseudonyms, at least 16 characters; unset = raw ids "
        "(VIDREC_PSEUDONYMISE_KEY).",
    )

    @model_validator(mode="after")
    def _key_is_long_enough(self) -> PrivacySettings:
        """A short key can be brute-forced, which would turn pseudonyms back into ids."""
        if self.pseudonymise_key is not None and len(self.pseudonymise_key) < 16:
            raise ValueError("VIDREC_PSEUDONYMISE_KEY must be at least 16 characters")
        return self


def ssl_context(kafka: KafkaSettings) -> Any:
    """The TLS context of an aiokafka client (None without TLS)."""
    import ssl

    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    ctx = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile:
        ctx.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return ctx


def aiokafka_kwargs(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options of an aiokafka client (the worker's replicator; vidrec serve's store
    and producer)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": kafka.servers,
        "security_protocol": kafka.security_protocol,
    }
    ctx = ssl_context(kafka)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if kafka.security_protocol.startswith("SASL_"):
        assert kafka.sasl_password is not None
        kwargs["sasl_mechanism"] = kafka.sasl_mechanism
        kwargs["sasl_plain_username"] = kafka.sasl_username
        kwargs["sasl_plain_password"] = kafka.sasl_password.get_secret_value()
    return kwargs
