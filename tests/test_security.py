"""Secure connections: SASL/SCRAM, TLS and the Qdrant API key reach every client, never a log."""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from streams.wire.settings import KafkaSettings
from workers.settings import IndexSettings

PASSWORD = "s3cr3t-kafka-pa55word"
API_KEY = "qdrant-api-key-0123456789"


class Captured(Exception):
    """Raised by a fake client constructor once it has recorded its arguments."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    """A PEM certificate (usable as CA and as client certificate) and its key."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vidrec-test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def secure_env(monkeypatch, tmp_path) -> dict[str, str]:
    """A SASL_SSL + SCRAM-SHA-512 + mutual-TLS cluster configured only through VIDREC_KAFKA_*."""
    cert, key = _self_signed(tmp_path)
    env = {
        "VIDREC_KAFKA_BOOTSTRAP_SERVERS": "kafka-1.example:9093,kafka-2.example:9093",
        "VIDREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "VIDREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "VIDREC_KAFKA_SASL_USERNAME": "vidrec",
        "VIDREC_KAFKA_SASL_PASSWORD": PASSWORD,
        "VIDREC_KAFKA_SSL_CAFILE": cert,
        "VIDREC_KAFKA_SSL_CERTFILE": cert,
        "VIDREC_KAFKA_SSL_KEYFILE": key,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_secrets_never_print_from_the_settings(secure_env, monkeypatch):
    monkeypatch.setenv("VIDREC_QDRANT_API_KEY", API_KEY)
    kafka, index = KafkaSettings(), IndexSettings()
    assert kafka.sasl_password.get_secret_value() == PASSWORD
    assert index.api_key.get_secret_value() == API_KEY
    for shown in (
        repr(kafka),
        str(kafka),
        str(kafka.model_dump()),
        kafka.model_dump_json(),
        repr(index),
        str(index.model_dump()),
        index.model_dump_json(),
    ):
        assert PASSWORD not in shown and API_KEY not in shown
    kwargs = kafka.client_kwargs()
    assert kwargs["sasl_plain_password"] == PASSWORD  # the client still gets the real one
    assert PASSWORD not in repr(kwargs) and PASSWORD not in str(kwargs)


def test_kafka_settings_are_checked_when_read(monkeypatch):
    monkeypatch.setenv("VIDREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIDREC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    with pytest.raises(ValueError, match="SASL_USERNAME.*SASL_PASSWORD"):
        KafkaSettings()
    monkeypatch.setenv("VIDREC_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("VIDREC_KAFKA_SSL_KEYFILE", "/k.pem")
    with pytest.raises(ValueError, match="CERTFILE"):
        KafkaSettings()


def test_sasl_and_tls_reach_the_kafka_python_clients(secure_env, monkeypatch):
    import kafka

    from streams.wire.clients import make_producer
    from streams.wire.topics import admin_client

    seen: dict[str, dict[str, Any]] = {}

    def fake(name: str) -> Any:
        def construct(**kwargs: Any) -> Any:
            seen[name] = kwargs
            return object()

        return construct

    monkeypatch.setattr(kafka, "KafkaProducer", fake("producer"))
    monkeypatch.setattr(kafka, "KafkaAdminClient", fake("admin"))
    monkeypatch.setattr(kafka.KafkaAdminClient, "DEFAULT_CONFIG", {}, raising=False)
    make_producer(KafkaSettings())
    admin_client(KafkaSettings())
    for kwargs in seen.values():
        assert kwargs["bootstrap_servers"] == ["kafka-1.example:9093", "kafka-2.example:9093"]
        assert kwargs["security_protocol"] == "SASL_SSL"
        assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
        assert kwargs["sasl_plain_username"] == "vidrec"
        assert kwargs["sasl_plain_password"] == PASSWORD
        assert kwargs["ssl_cafile"] == secure_env["VIDREC_KAFKA_SSL_CAFILE"]
        assert kwargs["ssl_certfile"] == secure_env["VIDREC_KAFKA_SSL_CERTFILE"]
        assert kwargs["ssl_keyfile"] == secure_env["VIDREC_KAFKA_SSL_KEYFILE"]
    assert seen["producer"]["acks"] == "all"  # tuning is added on top, not instead


def test_plaintext_passes_no_credentials():
    kwargs = KafkaSettings(bootstrap_servers="b:9092", ssl_cafile="/ca.pem").client_kwargs()
    assert kwargs == {"bootstrap_servers": ["b:9092"], "security_protocol": "PLAINTEXT"}


def test_sasl_and_tls_reach_faust_and_its_aiokafka_clients(secure_env):
    from faust.auth import SASLCredentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.wire.settings import aiokafka_kwargs
    from streams.wire.topics import Topics, TopicSettings
    from streams.worker.app import make_app
    from workers.encoder import HashingEncoder
    from workers.engine import Engine
    from workers.index import VideoIndex
    from workers.settings import EngineSettings

    enc = HashingEncoder()
    index = VideoIndex(IndexSettings(path=None), dim=enc.dim)
    wa = make_app(
        topics=Topics(TopicSettings(prefix="sec-test")),
        engine=Engine(EngineSettings(), enc, index),
        replicate=False,
    )
    try:
        conf = wa.app.conf
        assert [str(u) for u in conf.broker] == [
            "kafka://kafka-1.example:9093",
            "kafka://kafka-2.example:9093",
        ]
        creds = conf.broker_credentials
        assert isinstance(creds, SASLCredentials)
        assert PASSWORD not in repr(creds)
        auth = credentials_to_aiokafka_auth(creds)  # what faust hands its consumer and producer
        assert auth["security_protocol"] == "SASL_SSL"
        assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
        assert auth["sasl_plain_username"] == "vidrec"
        assert auth["sasl_plain_password"] == PASSWORD
        ctx = auth["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED
        assert [c["subject"] for c in ctx.get_ca_certs()] == [
            ((("commonName", "vidrec-test-ca"),),)
        ]
        replicator = aiokafka_kwargs(wa.kafka)
        assert replicator["sasl_mechanism"] == "SCRAM-SHA-512"
        assert replicator["sasl_plain_password"] == PASSWORD
        assert replicator["ssl_context"].get_ca_certs() == ctx.get_ca_certs()
    finally:
        wa.close()


def test_a_missing_client_certificate_fails_at_start_up(secure_env, monkeypatch, tmp_path):
    from streams.worker.app import faust_credentials

    monkeypatch.setenv("VIDREC_KAFKA_SSL_CERTFILE", str(tmp_path / "missing.pem"))
    with pytest.raises(OSError):
        faust_credentials(KafkaSettings())


def test_qdrant_api_key_and_https_reach_qdrant_client(monkeypatch):
    import workers.index as index_mod

    seen: dict[str, Any] = {}

    def construct(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise ConnectionRefusedError("no server in this test")

    monkeypatch.setattr(index_mod, "QdrantClient", construct)
    monkeypatch.setenv("QDRANT_URL", "https://qdrant.example:6333")
    monkeypatch.setenv("VIDREC_QDRANT_API_KEY", API_KEY)
    with pytest.raises(index_mod.VideoIndexError) as err:
        index_mod.VideoIndex(IndexSettings(), dim=8)
    assert seen["url"] == "https://qdrant.example:6333" and seen["api_key"] == API_KEY
    assert API_KEY not in str(err.value) and API_KEY not in repr(err.value)


def test_no_secret_reaches_the_logs_when_clients_are_created(
    secure_env, monkeypatch, caplog, capsys
):
    """Real kafka-python and qdrant-client constructors, at DEBUG, against closed ports."""
    from streams.wire.settings import aiokafka_kwargs
    from streams.wire.topics import admin_client
    from streams.worker.app import faust_credentials
    from workers.index import VideoIndex, VideoIndexError

    port = _free_port()
    monkeypatch.setenv("VIDREC_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    monkeypatch.setenv("VIDREC_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("QDRANT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("VIDREC_QDRANT_API_KEY", API_KEY)
    caplog.set_level(logging.DEBUG)
    kafka = KafkaSettings()
    logging.getLogger("vidrec.test").debug("settings: %s %r", kafka, IndexSettings())
    faust_credentials(kafka)
    aiokafka_kwargs(kafka)
    with pytest.raises(Exception) as err:  # noqa: PT011 - any "no broker" error will do
        admin_client(kafka, timeout_ms=300)  # kafka-python logs its whole config at DEBUG
    with pytest.raises(VideoIndexError):
        VideoIndex(IndexSettings(timeout_s=1.0), dim=8)
    assert "Starting KafkaAdminClient with configuration" in caplog.text  # the line was there
    out = capsys.readouterr()
    for text in (caplog.text, out.out, out.err, str(err.value)):
        assert PASSWORD not in text and API_KEY not in text
