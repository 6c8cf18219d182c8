"""Metric alerts on managed online endpoints (latency and server errors)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

from tenancy.spec import AlertsSpec

ENDPOINT_TYPE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"


@dataclass(frozen=True)
class _Rule:
    suffix: str
    description: str
    criterion: monitor.MetricCriteriaArgs


def _rules(alerts: AlertsSpec) -> list[_Rule]:
    return [
        _Rule(
            "latency",
            f"p99 latency above {alerts.p99_latency_ms:g} ms",
            monitor.MetricCriteriaArgs(
                criterion_type="StaticThresholdCriterion",
                name="p99-latency",
                metric_name="RequestLatency_P99",
                operator="GreaterThan",
                threshold=alerts.p99_latency_ms,
                time_aggregation="Average",
            ),
        ),
        _Rule(
            "errors",
            f"more than {alerts.server_errors_per_minute:g} 5xx per minute",
            monitor.MetricCriteriaArgs(
                criterion_type="StaticThresholdCriterion",
                name="server-errors",
                metric_name="RequestsPerMinute",
                operator="GreaterThan",
                threshold=alerts.server_errors_per_minute,
                time_aggregation="Average",
                # Only 5xx answers count: 4xx are the caller's mistakes.
                dimensions=[
                    monitor.MetricDimensionArgs(
                        name="statusCodeClass", operator="Include", values=["5xx"]
                    )
                ],
            ),
        ),
    ]


def create_endpoint_alerts(
    name: str,
    *,
    endpoint_id: pulumi.Input[str],
    resource_group_name: pulumi.Input[str],
    alerts: AlertsSpec,
    action_group_id: pulumi.Input[str],
    tags: dict[str, str],
    parent: pulumi.Resource,
) -> list[monitor.MetricAlert]:
    return [
        monitor.MetricAlert(
            f"{name}-alert-{rule.suffix}",
            resource_group_name=resource_group_name,
            rule_name=f"{name}-{rule.suffix}",
            description=rule.description,
            location="global",
            severity=alerts.severity,
            enabled=True,
            scopes=[endpoint_id],
            target_resource_type=ENDPOINT_TYPE,
            evaluation_frequency="PT1M",
            window_size="PT5M",
            auto_mitigate=True,
            # A union-typed property: the typed Args class is what gets wire names.
            criteria=monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(
                odata_type="Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                all_of=[rule.criterion],
            ),
            actions=[{"action_group_id": action_group_id}],
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for rule in _rules(alerts)
    ]
