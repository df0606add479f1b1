"""The Grafana dashboard and the ServiceMonitor: they query exactly the metrics the operator exposes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.chart.chart_tools import CHART, RELEASE, of_kind, one, render

METRICS = {
    "kubepilot_objects": "gauge",
    "kubepilot_reconcile_total": "counter",
    "kubepilot_reconcile_duration_seconds": "histogram",
    "kubepilot_child_failures_total": "counter",
    "kubepilot_download_bytes_total": "counter",
    "kubepilot_training_step": "gauge",
    "kubepilot_training_loss": "gauge",
    "kubepilot_generation_duration_seconds": "histogram",
    "kubepilot_generation_queue_depth": "gauge",
    "kubepilot_intake_reports_total": "counter",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
METRIC_NAME = re.compile(r"\b(kubepilot_[a-z0-9_]+)\b")
DASHBOARD_FILE = CHART / "files" / "grafana-dashboard.json"


def _dashboard_config_map(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        doc for doc in of_kind(render(values), "ConfigMap") if doc["metadata"]["name"].endswith("-dashboard")
    ]


def _panels() -> list[dict[str, Any]]:
    [config_map] = _dashboard_config_map()
    dashboard = json.loads(config_map["data"]["kubepilot-operator.json"])
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def _exprs() -> list[str]:
    return [target["expr"] for panel in _panels() for target in panel["targets"]]


def _series(metric: str) -> set[str]:
    if METRICS[metric] == "histogram":
        return {metric + suffix for suffix in HISTOGRAM_SERIES}
    return {metric}


def test_the_dashboard_ships_as_a_configmap_the_grafana_sidecar_loads() -> None:
    [config_map] = _dashboard_config_map()
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(key, text)] = config_map["data"].items()
    assert key.endswith(".json")
    dashboard = json.loads(text)
    assert dashboard == json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] == "kubepilot-operator"
    assert [v["type"] for v in dashboard["templating"]["list"]] == ["datasource"]


def test_the_dashboard_can_be_left_out_or_annotated_for_a_folder() -> None:
    assert _dashboard_config_map({"grafana": {"dashboard": {"enabled": False}}}) == []
    folder = {"grafana_folder": "AI"}
    [config_map] = _dashboard_config_map({"grafana": {"dashboard": {"annotations": folder}}})
    assert config_map["metadata"]["annotations"] == folder


def test_dashboard_panels_query_only_the_operator_metrics() -> None:
    allowed = set().union(*(_series(metric) for metric in METRICS))
    used = {name for expr in _exprs() for name in METRIC_NAME.findall(expr)}
    assert used, "no panel queries a kubepilot metric"
    assert used <= allowed, f"unknown metrics: {sorted(used - allowed)}"


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_every_operator_metric_has_a_panel(metric: str) -> None:
    assert any(_series(metric) & set(METRIC_NAME.findall(expr)) for expr in _exprs())


def test_counters_are_shown_as_rates_and_histograms_as_quantiles() -> None:
    for expr in _exprs():
        for name in METRIC_NAME.findall(expr):
            if name in METRICS and METRICS[name] == "counter":
                assert re.search(rf"\b(rate|increase)\({name}\[\d+[smh]\]\)", expr), expr
            if name.endswith("_bucket"):
                assert re.search(
                    rf"histogram_quantile\(0\.\d+, sum by \([^)]*\ble\b[^)]*\) \(rate\({name}\[", expr
                )
    generation = [expr for expr in _exprs() if "kubepilot_generation_duration_seconds_bucket" in expr]
    assert {re.findall(r"histogram_quantile\((0\.\d+)", expr)[0] for expr in generation} == {"0.5", "0.95"}
    download = [expr for expr in _exprs() if "kubepilot_download_bytes_total" in expr]
    assert download and all("rate(kubepilot_download_bytes_total[" in expr for expr in download)


def test_every_expression_is_plain_promql_that_prometheus_itself_can_run() -> None:
    # Grafana variables ($__rate_interval, $namespace) would not parse outside Grafana.
    for expr in _exprs():
        assert "$" not in expr, expr
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), expr


def test_panels_have_unique_ids_titles_and_ref_ids_on_the_prometheus_datasource() -> None:
    [config_map] = _dashboard_config_map()
    panels = json.loads(config_map["data"]["kubepilot-operator.json"])["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    graphs = [p for p in panels if p["type"] != "row"]
    assert len({p["title"] for p in graphs}) == len(graphs)
    for panel in graphs:
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["targets"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids)


def test_no_service_monitor_unless_asked() -> None:
    assert of_kind(render(), "ServiceMonitor") == []


def test_the_service_monitor_scrapes_the_operator_service_intake_port() -> None:
    values = {
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}}
    }
    manifests = render(values)
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(manifests, "Service", f"{RELEASE}-operator")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "intake"
