"""infra/: the Grafana dashboard asks only for metrics the code registers, Prometheus scrapes the
compose services by name on the ports they listen on, and Grafana's provisioning finds both."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "infra" / "grafana" / "vidrec-dashboard.json"
PROVISIONING = ROOT / "infra" / "grafana" / "provisioning"
PROMETHEUS = ROOT / "infra" / "prometheus" / "prometheus.yml"

# The metric names fixed for issue 15 (the lead's common brief), with their type and labels. The
# worker's and the server's code registers them; keep this table equal to that list: the
# dashboard is checked against it, and the code against it once it registers metrics
# (test_the_code_registers_the_fixed_names).
WORKER_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vidrec_events_total": ("counter", ()),
    "vidrec_lists_published_total": ("counter", ()),
    "vidrec_dead_letters_total": ("counter", ("stage",)),
    "vidrec_degraded_searches_total": ("counter", ()),
    "vidrec_videos_embedded_total": ("counter", ()),
    "vidrec_consumer_lag": ("gauge", ("topic", "partition")),
    "vidrec_event_to_list_seconds": ("histogram", ()),
    "vidrec_live_hr_at_10": ("gauge", ()),
    "vidrec_live_ndcg_at_10": ("gauge", ()),
    "vidrec_live_quality_window": ("gauge", ()),
}
SERVER_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vidrec_serve_request_seconds": ("histogram", ("route", "method", "status")),
    "vidrec_serve_users": ("gauge", ()),
    "vidrec_serve_videos": ("gauge", ()),
    "vidrec_serve_store_lag": ("gauge", ()),
    "vidrec_serve_list_visible_seconds": ("histogram", ()),
}
METRICS = {**WORKER_METRICS, **SERVER_METRICS}
# what Prometheus adds to every series it scrapes
TARGET_LABELS = {"instance", "job"}


def series(name: str) -> dict[str, tuple[str, set[str]]]:
    """The series a metric family is exposed as, each with its family and labels."""
    kind, labels = METRICS[name]
    if kind == "histogram":
        return {
            f"{name}_bucket": (name, {*labels, "le"}),
            f"{name}_count": (name, set(labels)),
            f"{name}_sum": (name, set(labels)),
        }
    return {name: (name, set(labels))}


SERIES = {s: v for name in METRICS for s, v in series(name).items()}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    return load_yaml(ROOT / "docker-compose.yml")["services"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    return [
        (p["title"], t["expr"])
        for p in dash["panels"]
        if p["type"] != "row"
        for t in p.get("targets", [])
    ]


def test_dashboard_asks_only_for_registered_metrics_and_shows_them_all():
    used: set[str] = set()
    queries = dashboard_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        names = re.findall(r"\bvidrec_\w+", expr)
        assert names, f"{title}: {expr} reads no vidrec metric"
        unknown = [n for n in names if n not in SERIES]
        assert not unknown, f"{title}: {unknown} is not a metric the code registers"
        used.update(SERIES[n][0] for n in names)
    assert used == set(METRICS), f"metrics on no panel: {set(METRICS) - used}"


def test_dashboard_queries_parse_and_group_by_labels_their_series_have():
    promql = pytest.importorskip("promql_parser")  # pip install promql-parser
    for title, expr in dashboard_queries():
        tree = promql.parse(expr)  # raises on a query Prometheus would reject
        names: list[str] = []
        grouped: set[str] = set()

        def visit(node: Any, names: list[str] = names, grouped: set[str] = grouped) -> None:
            if isinstance(node, promql.VectorSelector):
                names.append(node.name)
            if isinstance(node, promql.AggregateExpr) and node.modifier is not None:
                grouped.update(node.modifier.labels)

        promql.walk(tree, visit)
        assert names and all(n in SERIES for n in names), f"{title}: {expr}"
        assert sorted(names) == sorted(re.findall(r"\bvidrec_\w+", expr))
        labels = set().union(*(SERIES[n][1] for n in names)) | TARGET_LABELS
        assert grouped <= labels, f"{title}: grouped by {grouped - labels}, which no series has"


def test_latency_quantiles_read_histogram_buckets():
    for title, expr in dashboard_queries():
        if "histogram_quantile" in expr:
            assert "_bucket[" in expr and "by (le" in expr, f"{title}: {expr}"
        else:
            assert "_bucket" not in expr, f"{title}: buckets outside histogram_quantile"


def test_dashboard_panels_use_the_provisioned_datasource_and_do_not_overlap():
    dash = json.loads(DASHBOARD.read_text())
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert dash["uid"] and dash["title"] and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[x, y]}"
                cells[x, y] = p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == source["uid"], p["title"]
        assert all(t["datasource"]["uid"] == source["uid"] for t in p["targets"]), p["title"]


def _port(target: str) -> tuple[str, int]:
    host, port = target.rsplit(":", 1)
    return host, int(port)


def test_prometheus_scrapes_the_compose_services_on_their_ports():
    services = compose()
    jobs = {j["job_name"]: j for j in load_yaml(PROMETHEUS)["scrape_configs"]}
    scraped: dict[str, int] = {}
    for job in jobs.values():
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                scraped[name] = sd["port"]
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = _port(target)
                if host != "localhost":  # Prometheus itself
                    scraped[host] = port
    assert set(scraped) <= set(services), f"not compose services: {set(scraped) - set(services)}"
    worker = services["worker"]["environment"]
    assert scraped["worker"] == int(worker["VIDREC_WORKER_WEB_PORT"]) > 0
    assert worker["VIDREC_WORKER_WEB_HOST"] == "0.0.0.0"  # reachable from the prometheus container
    serve = services["serve"]["environment"]
    assert scraped["serve"] == int(serve["VIDREC_SERVE_PORT"])
    assert serve["VIDREC_SERVE_HOST"] == "0.0.0.0"
    assert all(j.get("metrics_path", "/metrics") == "/metrics" for j in jobs.values())


def test_compose_mounts_the_configs_and_grafana_finds_them():
    services = compose()
    for name in ("serve", "prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    mounts: dict[str, Path] = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            src, dst = volume.split(":")[:2]
            if src.startswith("./"):
                assert (ROOT / src).exists(), f"{name} mounts {src}, which is not in the repo"
                mounts[dst] = (ROOT / src).resolve()
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    assert mounts["/etc/grafana/provisioning"] == PROVISIONING
    (provider,) = load_yaml(PROVISIONING / "dashboards" / "vidrec.yml")["providers"]
    folder = provider["options"]["path"].rstrip("/")
    assert mounts[f"{folder}/{DASHBOARD.name}"] == DASHBOARD
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    host, port = _port(source["url"].removeprefix("http://"))
    assert host == "prometheus" and f"127.0.0.1:{port}:{port}" in services[host]["ports"]
    assert services["serve"]["command"] == ["serve"]
    assert set(services["serve"]["depends_on"]) == {"kafka"}


def _literals(package: str) -> tuple[bool, set[str]]:
    """Whether ``package`` imports prometheus_client, and every string literal in it."""
    uses, found = False, set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
            elif isinstance(node, ast.ImportFrom | ast.Import):
                mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                mods += [a.name for a in node.names]
                uses = uses or any(m.startswith("prometheus_client") for m in mods)
    return uses, found


@pytest.mark.parametrize(
    ("package", "fixed"), [("streams/worker", WORKER_METRICS), ("streams/serve", SERVER_METRICS)]
)
def test_the_code_registers_the_fixed_names(package, fixed):
    """Once a side registers metrics, each fixed name is in its code (a counter may be named
    without ``_total``, which prometheus-client adds)."""
    uses, literals = _literals(package)
    if not uses:
        pytest.skip(f"{package} registers no Prometheus metric yet")
    missing = [n for n in fixed if n not in literals and n.removesuffix("_total") not in literals]
    assert not missing, f"{package} does not name {missing}"
