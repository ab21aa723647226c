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
    "vidrec_thumbnails_total": ("counter", ("outcome",)),  # issue 16
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


# faust's own sensor (faust.sensors.prometheus), which the worker serves beside them with this
# name prefix; its names are read from faust's source below
FAUST_PREFIX = "faust"


def series(
    name: str, kind: str, labels: tuple[str, ...], counter_suffix: str = ""
) -> dict[str, tuple[str, set[str]]]:
    """The series a metric family is exposed as, each with its family and labels."""
    if kind == "histogram":
        return {
            f"{name}_bucket": (name, {*labels, "le"}),
            f"{name}_count": (name, set(labels)),
            f"{name}_sum": (name, set(labels)),
        }
    if kind == "counter":
        return {f"{name}{counter_suffix}": (name, set(labels))}
    return {name: (name, set(labels))}


def faust_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """faust's sensor metrics, by name with ``FAUST_PREFIX``: read from the calls
    ``Counter(f"{app_name}_...", help, [labels], ...)`` in faust's installed source."""
    import faust.sensors.prometheus as sensor

    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for node in ast.walk(ast.parse(Path(sensor.__file__).read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = node.func.id.lower()
        if kind not in {"counter", "gauge", "histogram"} or not node.args:
            continue
        first = node.args[0]
        if not isinstance(first, ast.JoinedStr) or len(first.values) != 2:
            continue
        suffix = first.values[1]
        assert isinstance(suffix, ast.Constant)
        labels: tuple[str, ...] = ()
        if len(node.args) > 2 and isinstance(node.args[2], ast.List):
            labels = tuple(e.value for e in node.args[2].elts if isinstance(e, ast.Constant))
        found[FAUST_PREFIX + suffix.value] = (kind, labels)
    return found


SERIES = {s: v for name, (k, lab) in METRICS.items() for s, v in series(name, k, lab).items()}


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


def all_series() -> dict[str, tuple[str, set[str]]]:
    """vidrec's series and faust's (prometheus-client names a counter's sample ``_total``)."""
    faust = {
        s: v
        for name, (k, lab) in faust_metrics().items()
        for s, v in series(name, k, lab, counter_suffix="_total").items()
    }
    return {**SERIES, **faust}


def metric_names(expr: str) -> list[str]:
    return re.findall(rf"\b(?:vidrec|{FAUST_PREFIX})_\w+(?=[\[{{ )]|$)", expr)


def test_faust_sensor_metrics_are_read_from_faust():
    faust = faust_metrics()
    assert len(faust) >= 20  # the sensor's metric families
    assert faust["faust_messages_received_per_topic"] == ("counter", ("topic",))
    assert faust["faust_producer_send_latency"][0] == "histogram"


def test_dashboard_asks_only_for_registered_metrics_and_shows_them_all():
    known = all_series()
    used: set[str] = set()
    queries = dashboard_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        names = metric_names(expr)
        assert names, f"{title}: {expr} reads no vidrec or faust metric"
        unknown = [n for n in names if n not in known]
        assert not unknown, f"{title}: {unknown} is not a metric the code registers"
        used.update(known[n][0] for n in names)
    missing = set(METRICS) - used
    assert not missing, f"metrics on no panel: {missing}"
    assert used - set(METRICS), "no panel of faust's own sensor"


def test_dashboard_queries_parse_and_group_by_labels_their_series_have():
    promql = pytest.importorskip("promql_parser")  # pip install promql-parser
    known = all_series()
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
        assert names and all(n in known for n in names), f"{title}: {expr}"
        assert sorted(names) == sorted(metric_names(expr))
        labels = set().union(*(known[n][1] for n in names)) | TARGET_LABELS
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


def test_the_worker_serves_faust_metrics_under_the_dashboards_prefix():
    calls = [
        node
        for path in (ROOT / "streams" / "worker").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", getattr(node.func, "attr", "")) == "setup_prometheus_sensors"
    ]
    if not calls:
        pytest.skip("the worker does not set up faust's Prometheus sensor yet")
    for call in calls:
        prefix = {k.arg: k.value for k in call.keywords}.get("name_prefix")
        assert isinstance(prefix, ast.Constant) and prefix.value == FAUST_PREFIX


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
