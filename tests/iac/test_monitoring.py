"""The chart's monitoring: PodMonitor, ServiceMonitor, PrometheusRule, Grafana dashboards.

The alerts run through ``promtool test rules`` (Prometheus built from its Go module by
tools/promtool/build.sh) on the series of alerts_test.yaml; every metric an alert or a dashboard
panel names must be one a real node's ``/metrics`` or the operator's metrics endpoint serves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.iac.conftest import unavailable
from tests.iac.harness import REPO
from tests.iac.helm import CHART

PROMTOOL_BUILD = REPO / "tools" / "promtool" / "build.sh"
ALERT_TESTS = Path(__file__).with_name("alerts_test.yaml")
DASHBOARDS = CHART / "files" / "dashboards"
ENABLED = {"monitoring": {"enabled": True}}
METRIC = re.compile(r"\bknooppunt_[a-z0-9_]+\b")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (counter|gauge|histogram|summary|info|stateset|untyped)$")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "untyped": ("",),
}


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def series_names(exposition: str) -> set[str]:
    """The sample names a scrape of this exposition can yield (from its TYPE lines)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        match = TYPE_LINE.match(line)
        if match:
            base = match.group(1)
            if match.group(2) == "counter":
                base = base.removesuffix("_total")
            names |= {base + s for s in SUFFIXES[match.group(2)]}
    return names


@pytest.fixture(scope="module")
def rendered(helm: Any) -> list[dict[str, Any]]:
    return list(helm.template(ENABLED))


@pytest.fixture(scope="module")
def rule_groups(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    [rule] = of_kind(rendered, "PrometheusRule")
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


@pytest.fixture(scope="module")
def promtool() -> Path:
    if os.environ.get("KNOOPPUNT_PROMTOOL"):
        path = Path(os.environ["KNOOPPUNT_PROMTOOL"])
    else:
        out = subprocess.run(
            ["bash", str(PROMTOOL_BUILD), "--path"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        path = Path(out.stdout.strip())
    if not os.access(path, os.X_OK):
        unavailable(f"promtool not built at {path}: run tools/promtool/build.sh")
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Scrape a running node's plain metrics port and the operator's metrics endpoint."""
    from knooppunt_operator import metrics as operator_metrics

    from node_runtime.api.server import start_in_thread
    from node_runtime.model.loading import load_paths
    from node_runtime.security.pki.development import ensure_for_resources
    from tests.conftest import EXAMPLES, NODE, free_port, node_settings

    base = tmp_path_factory.mktemp("scrape")
    resources = base / "resources"
    shutil.copytree(EXAMPLES, resources, ignore=shutil.ignore_patterns("messages"))
    pki = ensure_for_resources(base / "pki", load_paths([resources]), NODE)
    pki.store.issue_client("delivery", organisation="Knooppunt", oin="00000001999000000111")
    own = pki.store.paths("delivery")
    health = free_port()
    running = start_in_thread(
        node_settings(
            resources,
            base / "data",
            pki,
            health_port=health,
            delivery_cert=own.chain,
            delivery_key=own.key,
        )
    )
    try:
        node_text = httpx.get(f"http://127.0.0.1:{health}/metrics", timeout=10).text
    finally:
        running.stop()
    # the node's own certificates are reported (the certificate-expiry alert depends on it)
    assert 'knooppunt_certificate_expiry_timestamp_seconds{certificate="server"}' in node_text
    assert 'knooppunt_certificate_expiry_timestamp_seconds{certificate="delivery"}' in node_text
    port = free_port()
    operator_metrics.serve(port)
    operator_text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return series_names(node_text) | series_names(operator_text)


def test_off_by_default(helm: Any) -> None:
    kinds = {d["kind"] for d in helm.template()}
    assert not kinds & {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    assert not [
        c
        for c in of_kind(helm.template(), "ConfigMap")
        if "grafana_dashboard" in c["metadata"].get("labels", {})
    ]


def test_lint_strict_with_monitoring(helm: Any) -> None:
    helm.run("lint", "--strict", str(CHART), "--values", str(helm.values_file(ENABLED)))


def test_pod_monitor_selects_the_operators_node_pods(rendered: list[dict[str, Any]]) -> None:
    from knooppunt_operator.builders import meta, node

    [monitor] = of_kind(rendered, "PodMonitor")
    # exactly the labels the operator puts on every node's pods, and their metrics port
    selector = monitor["spec"]["selector"]["matchLabels"]
    pod_labels = meta.node_labels("kp")
    assert all(pod_labels[k] == v for k, v in selector.items())
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    assert node.HEALTH_PORT
    assert endpoint["relabelings"][0]["targetLabel"] == "knooppunt"


def test_pod_monitor_only_in_watched_namespaces(helm: Any) -> None:
    docs = helm.template({**ENABLED, "watchNamespaces": ["zorg-a", "zorg-b"]})
    [monitor] = of_kind(docs, "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["zorg-a", "zorg-b"]}


def test_service_monitor_selects_the_operators_metrics_service(
    rendered: list[dict[str, Any]],
) -> None:
    [monitor] = of_kind(rendered, "ServiceMonitor")
    [service] = [
        s for s in of_kind(rendered, "Service") if s["metadata"]["name"].endswith("-metrics")
    ]
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_extra_labels_reach_every_monitoring_object(helm: Any) -> None:
    docs = helm.template(
        {"monitoring": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}}
    )
    monitoring = [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "monitoring"
    ]
    assert {d["kind"] for d in monitoring} == {
        "PodMonitor",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    }
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack" for d in monitoring)


def test_every_alert_of_the_operations_guide_is_there(rule_groups: list[dict[str, Any]]) -> None:
    alerts = {r["alert"] for g in rule_groups for r in g["rules"]}
    assert alerts >= {
        "KnooppuntDeadLettersGrowing",
        "KnooppuntCircuitOpen",
        "KnooppuntDeliveryLag",
        "KnooppuntBacklogAge",
        "KnooppuntCertificateExpiresSoon",
        "KnooppuntOperatorReconcileErrors",
        "KnooppuntConversationsOverdue",
    }
    operations = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    missing = sorted(a for a in alerts if a not in operations)
    assert not missing, f"alerts not described in docs/operations.md: {missing}"
    for group in rule_groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_thresholds_come_from_values(helm: Any) -> None:
    docs = helm.template(
        {
            "monitoring": {
                "enabled": True,
                "alerts": {"backlogAgeSeconds": 7200, "certificateWarningDays": 30},
            }
        }
    )
    [rule] = of_kind(docs, "PrometheusRule")
    exprs = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert exprs["KnooppuntBacklogAge"].endswith("> 7200")
    assert exprs["KnooppuntCertificateExpiresSoon"].endswith(f"< {30 * 86400}")


def test_promtool_rules_unit_tests(
    promtool: Path, rule_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
    shutil.copy(ALERT_TESTS, tmp_path / ALERT_TESTS.name)
    check = subprocess.run(
        [str(promtool), "check", "rules", "rules.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    result = subprocess.run(
        [str(promtool), "test", "rules", ALERT_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_is_unit_tested(rule_groups: list[dict[str, Any]]) -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]
    }
    alerts = {r["alert"] for g in rule_groups for r in g["rules"]}
    assert alerts == fired, f"alerts never shown firing by a promtool test: {alerts - fired}"


def test_alerts_name_exported_metrics(
    rule_groups: list[dict[str, Any]], exported: set[str]
) -> None:
    for group in rule_groups:
        for rule in group["rules"]:
            named = set(METRIC.findall(rule["expr"]))
            assert named, rule["alert"]
            assert named <= exported, (rule["alert"], named - exported)


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    board = json.loads(path.read_text(encoding="utf-8"))
    queries = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            queries.append((f"${var['name']}", var["query"]["query"]))
    return queries


@pytest.mark.parametrize("name", ["knooppunt-node", "knooppunt-operator"])
def test_dashboard_queries_name_exported_metrics(name: str, exported: set[str]) -> None:
    queries = dashboard_queries(DASHBOARDS / f"{name}.json")
    assert len(queries) >= 8
    for title, expr in queries:
        named = set(METRIC.findall(expr))
        assert named, f"panel {title!r} queries no knooppunt metric"
        assert named <= exported, (title, named - exported)


def test_node_dashboard_covers_every_node_metric(exported: set[str]) -> None:
    """A metric the node exports but no panel shows is a blind spot."""
    shown = {
        m
        for _, e in dashboard_queries(DASHBOARDS / "knooppunt-node.json")
        for m in METRIC.findall(e)
    }
    node_metrics = {
        n
        for n in exported
        if not n.startswith("knooppunt_operator_")
        and not n.endswith("_created")
        and n.startswith("knooppunt_")
    }
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in node_metrics}
    shown_families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in shown}
    assert families <= shown_families, families - shown_families


def test_dashboards_ship_as_grafana_config_maps(rendered: list[dict[str, Any]]) -> None:
    maps = [
        c
        for c in of_kind(rendered, "ConfigMap")
        if c["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    shipped = {key: json.loads(value) for c in maps for key, value in c["data"].items()}
    assert set(shipped) == {"knooppunt-node.json", "knooppunt-operator.json"}
    for key, board in shipped.items():
        assert board == json.loads((DASHBOARDS / key).read_text(encoding="utf-8"))
        assert board["uid"] and len({p["id"] for p in board["panels"]}) == len(board["panels"])
