"""The Prometheus rules, scrape config and Grafana dashboard in deploy/ against promtool
and against the metrics the services really export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conveyor.metrics import (
    GatewayMetrics,
    SchedulerMetrics,
    ServiceMetrics,
    StoreMetrics,
    WorkerMetrics,
)
from tests.support import promtool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "conveyor.json"
METRIC_NAME = re.compile(r"\bconveyor_[a-z0-9_]+")
ALERT_NAME = re.compile(r"^\s*- alert: (\w+)$", re.MULTILINE)


def exported_names() -> set[str]:
    """Every sample name any Conveyor service can export."""
    services: list[ServiceMetrics] = [
        GatewayMetrics(),
        WorkerMetrics(1),
        StoreMetrics(),
        SchedulerMetrics(),
    ]
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "info": ("_info",),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for service in services
        for family in service.registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def alert_names() -> list[str]:
    # Read without a YAML parser (none is a dependency); promtool checks the syntax.
    return ALERT_NAME.findall((PROMETHEUS / "alerts.yml").read_text())


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard query."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_alert_rules_pass_promtool_check() -> None:
    output = promtool.run("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert f"SUCCESS: {len(alert_names())} rules found" in output


def test_alerts_fire_on_sample_series_and_stay_quiet_otherwise() -> None:
    # alerts_test.yml feeds series to each alert and lists what must (not) fire when.
    promtool.run("test", "rules", "alerts_test.yml", cwd=PROMETHEUS)


def test_scrape_config_is_valid_and_loads_the_rules() -> None:
    output = promtool.run("check", "config", "prometheus.yml", cwd=PROMETHEUS)
    assert "1 rule files found" in output


def test_the_required_alerts_exist() -> None:
    names = set(alert_names())
    assert {
        "ConveyorTaskFailureRateHigh",
        "ConveyorQueueGrowing",
        "ConveyorTaskTypeNotConsumed",
        "ConveyorDeadLetters",
        "ConveyorQueueNearLimit",
        "ConveyorSubmitsRefused",
        "ConveyorStoreNoWriter",
        "ConveyorStoreWriterChangesOften",
    } <= names


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = exported_names()
    used = set(METRIC_NAME.findall((PROMETHEUS / "alerts.yml").read_text()))
    used |= {name for _, expr in dashboard_queries() for name in METRIC_NAME.findall(expr)}
    assert used, "no metric found in the rules and dashboard"
    assert used - exported == set(), "queries name metrics no service exports"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: check each query as a recording rule, with the
    # dashboard's variables replaced by what Grafana would put there.
    rules = [
        {
            "record": f"dashboard:query_{index}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$type", ".*"),
        }
        for index, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard_rules.yml"
    # JSON is YAML, so promtool reads it as a rule file.
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = promtool.run("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output


def test_dashboard_has_the_required_panels_laid_out_without_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Throughput",
        "Run time",
        "Failure rate by type",
        "Queue depth",
        "Worker saturation",
    } <= titles
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
