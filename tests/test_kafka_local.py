"""The local broker and its wrapper: settings, readiness probe, kafka.sh, a real round trip."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from pydantic import ValidationError

from streams.cli import kafka as kafka_cli
from streams.wire.broker import kafka_script, wait_for_broker
from streams.wire.settings import KafkaSettings

# ---------------------------------------------------------------------------- no broker needed


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``VIDREC_KAFKA_...`` variable from the caller's shell leaks into a settings test."""
    for name in list(os.environ):
        if name.startswith("VIDREC_KAFKA_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_read_prefixed_env(clean_env: pytest.MonkeyPatch) -> None:
    monkeypatch = clean_env
    monkeypatch.setenv("VIDREC_KAFKA_BOOTSTRAP_SERVERS", "a:1, b:2")
    monkeypatch.setenv("VIDREC_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VIDREC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("VIDREC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("VIDREC_KAFKA_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("VIDREC_KAFKA_SSL_CAFILE", "/etc/ca.pem")
    s = KafkaSettings()
    assert s.servers == ["a:1", "b:2"]
    assert "hunter2" not in repr(s)
    assert s.client_kwargs() == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "hunter2",
        "ssl_cafile": "/etc/ca.pem",
    }


def test_settings_default_is_plaintext_local(clean_env: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().client_kwargs() == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }


def test_settings_reject_half_configured_sasl(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="VIDREC_KAFKA_SASL_PASSWORD"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wait_for_broker_times_out_with_reason() -> None:
    with pytest.raises(TimeoutError, match="no Kafka broker answered"):
        wait_for_broker(f"127.0.0.1:{_closed_port()}", timeout_s=1.0)


def test_script_status_reports_stopped_for_an_empty_run_dir(tmp_path: Path) -> None:
    env = dict(os.environ, VIDREC_KAFKA_DIR=str(tmp_path), VIDREC_KAFKA_PORT=str(_closed_port()))
    out = subprocess.run(
        ["bash", str(kafka_script()), "status"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "stopped" in out.stdout


def test_script_status_is_quiet_about_a_stale_pid_file(tmp_path: Path) -> None:
    """A broker killed without 'down' leaves its pid file behind; status says stopped, no
    shell error about the gone process's /proc entry."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / "kafka.pid").write_text(f"{gone.pid}\n")
    env = dict(os.environ, VIDREC_KAFKA_DIR=str(tmp_path), VIDREC_KAFKA_PORT=str(_closed_port()))
    out = subprocess.run(
        ["bash", str(kafka_script()), "status"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "stopped" in out.stdout
    assert out.stderr == ""


def test_cli_registers_kafka_actions() -> None:
    parser = argparse.ArgumentParser()
    kafka_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kafka", "status", "--port", "19092"])
    assert (args.action, args.port, args.func) == ("status", 19092, kafka_cli._cmd_kafka)
    with pytest.raises(SystemExit):
        parser.parse_args(["kafka", "explode"])


def test_compose_file_wires_the_services() -> None:
    yaml = pytest.importorskip("yaml")
    root = kafka_script().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "qdrant", "worker", "serve", "prometheus", "grafana"}
    env = services["kafka"]["environment"]
    listeners = {x.split("://")[0] for x in env["KAFKA_LISTENERS"].split(",")}
    mapped = {x.split(":")[0] for x in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")}
    advertised = {x.split("://")[0] for x in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert listeners == mapped
    assert advertised <= listeners - {"CONTROLLER"}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    worker = services["worker"]
    assert (root / worker["build"]["dockerfile"]).is_file()
    assert worker["command"] == ["worker"]
    assert worker["environment"]["VIDREC_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert worker["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert set(worker["depends_on"]) == {"kafka", "qdrant"}


# ------------------------------------------------------------------------- the real broker


@pytest.fixture()
def topic(kafka_bootstrap: str) -> Iterator[str]:
    """A fresh single-partition topic, deleted afterwards; the uuid keeps runs apart."""
    name = f"vidrec-test-roundtrip-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        admin.wait_for_topics([name], timeout_ms=30_000)
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


@pytest.mark.kafka
def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    assert cluster["cluster_id"]
    assert [b["broker_id"] for b in cluster["brokers"]] == [cluster["controller_id"]]


@pytest.mark.kafka
def test_produce_consume_round_trip(kafka_bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        sent = producer.send(
            topic, key=b"user-1", value=b'{"hello":"kafka"}', headers=[("kind", b"test")]
        ).get(timeout=30)
    finally:
        producer.close()
    assert (sent.topic, sent.partition, sent.offset) == (topic, 0, 0)

    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        for _ in range(60):  # bounded: each poll waits at most 500 ms for data
            records.extend(consumer.poll(timeout_ms=500).get(tp, []))
            if records:
                break
    finally:
        consumer.close()
    assert len(records) == 1
    (rec,) = records
    assert (rec.offset, rec.key, rec.value) == (0, b"user-1", b'{"hello":"kafka"}')
    assert list(rec.headers) == [("kind", b"test")]


@pytest.mark.kafka
def test_script_status_reports_running(kafka_bootstrap: str) -> None:
    host, _, port = kafka_bootstrap.split(",")[0].strip().rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip(f"the broker at {kafka_bootstrap} is not the local kafka.sh one")
    env = dict(os.environ, VIDREC_KAFKA_PORT=port)
    out = subprocess.run(
        ["bash", str(kafka_script()), "status"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "running" in out.stdout
    assert f"127.0.0.1:{port}" in out.stdout
