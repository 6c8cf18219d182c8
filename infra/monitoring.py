"""Metric alerts on managed online endpoints (latency and server errors)."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import monitor

from tenancy.spec import AlertsSpec

ENDPOINT_TYPE = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"


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
    criteria = {
        "latency": {
            "name": "p99-latency",
            "metric_name": "RequestLatency_P99",
            "threshold": alerts.p99_latency_ms,
            "time_aggregation": "Average",
            "dimensions": [],
            "description": f"p99 latency above {alerts.p99_latency_ms:g} ms",
        },
        "errors": {
            "name": "server-errors",
            "metric_name": "RequestsPerMinute",
            "threshold": alerts.server_errors_per_minute,
            "time_aggregation": "Average",
            # Only 5xx answers count: 4xx are the caller's mistakes.
            "dimensions": [{"name": "statusCodeClass", "operator": "Include", "values": ["5xx"]}],
            "description": f"more than {alerts.server_errors_per_minute:g} 5xx per minute",
        },
    }
    created = []
    for suffix, criterion in criteria.items():
        description = str(criterion.pop("description"))
        created.append(
            monitor.MetricAlert(
                f"{name}-alert-{suffix}",
                resource_group_name=resource_group_name,
                rule_name=f"{name}-{suffix}",
                description=description,
                location="global",
                severity=alerts.severity,
                enabled=True,
                scopes=[endpoint_id],
                target_resource_type=ENDPOINT_TYPE,
                evaluation_frequency="PT1M",
                window_size="PT5M",
                auto_mitigate=True,
                criteria={
                    "odata_type": "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria",
                    "all_of": [
                        {
                            "criterion_type": "StaticThresholdCriterion",
                            "operator": "GreaterThan",
                            **criterion,
                        }
                    ],
                },
                actions=[{"action_group_id": action_group_id}],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=parent),
            )
        )
    return created
