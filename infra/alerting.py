"""Action groups: people for operational alerts, the automation for budget alerts; and the
log search alert rules that deliver the automation's notifications to people.

Why log search alerts (X6): the automation already writes its telemetry to the platform's
Application Insights with Entra (no secret, no other service to reach), the operations
action group already holds the stack's ``alerts.contacts``, and an alert rule is a resource
the program owns and tests. The cost is a delay of up to one evaluation period (5 min),
acceptable for approval requests, rollbacks, drift, budget stops and idle workspaces.
https://learn.microsoft.com/azure/azure-monitor/alerts/alerts-create-log-alert-rule
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

from infra.shared import SharedServices
from tenancy import contracts
from tenancy.spec import PlatformSpec

#: Azure Monitor severities (0 critical .. 4 verbose) of the automation's notifications.
NOTIFICATION_SEVERITY = {"critical": 1, "warning": 2, "info": 3}


def notification_query(severity: str) -> str:
    """The notification lines of one severity in the Function App's traces, split into the
    tenant and the text (contracts.notification_line writes them)."""
    prefix = contracts.NOTIFICATION_PREFIX
    return (
        "traces\n"
        f'| where message startswith "{prefix} severity={severity} "\n'
        f'| parse message with "{prefix} severity=" severity " tenant=" tenant ": " text\n'
        "| project timestamp, tenant, text"
    )


@dataclass
class AlertingArgs:
    spec: PlatformSpec
    shared: SharedServices
    function_host_name: pulumi.Input[str]
    tenant_id: pulumi.Input[str]


class Alerting(pulumi.ComponentResource):
    def __init__(
        self, name: str, args: AlertingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:monitoring:Alerting", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        self.operations = self._create_operations_group()
        self.automation = self._create_automation_group()
        self.notifications = self._create_notification_rules()
        self.register_outputs(
            {
                "operationsActionGroupId": self.operations.id,
                "automationActionGroupId": self.automation.id,
                "notificationRuleIds": [rule.id for rule in self.notifications],
            }
        )

    def _create_notification_rules(self) -> list[monitor.ScheduledQueryRule]:
        """One rule per severity: every notification line in the window fires an alert for
        its tenant and text (dimensions split the alerts), e-mailed to the contacts."""
        shared = self._args.shared
        return [
            monitor.ScheduledQueryRule(
                f"{self._name}-notify-{severity}",
                resource_group_name=shared.resource_group.name,
                rule_name=f"notify-{severity}-{self._args.spec.environment.value}",
                description=f"tenant-mlops automation notifications ({severity})",
                location=self._args.spec.location,
                kind="LogAlert",
                enabled=True,
                scopes=[shared.app_insights.id],
                severity=NOTIFICATION_SEVERITY[severity],
                evaluation_frequency="PT5M",
                window_size="PT5M",
                auto_mitigate=False,
                criteria=monitor.ScheduledQueryRuleCriteriaArgs(
                    all_of=[
                        monitor.ConditionArgs(
                            query=notification_query(severity),
                            time_aggregation="Count",
                            operator="GreaterThan",
                            threshold=0,
                            dimensions=[
                                monitor.DimensionArgs(name=n, operator="Include", values=["*"])
                                for n in ("tenant", "text")
                            ],
                            failing_periods=monitor.ConditionFailingPeriodsArgs(
                                number_of_evaluation_periods=1, min_failing_periods_to_alert=1
                            ),
                        )
                    ]
                ),
                actions=monitor.ActionsArgs(action_groups=[self.operations.id]),
                tags=shared.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for severity in contracts.NOTIFICATION_SEVERITIES
        ]

    def _email_receivers(self) -> list[dict[str, object]]:
        return [
            {"name": f"oncall-{i}", "email_address": email, "use_common_alert_schema": True}
            for i, email in enumerate(self._args.spec.alerts.contacts)
        ]

    def _create_operations_group(self) -> monitor.ActionGroup:
        spec = self._args.spec
        return monitor.ActionGroup(
            f"{self._name}-ops",
            resource_group_name=self._args.shared.resource_group.name,
            action_group_name=f"ag-ops-{spec.prefix}-{spec.environment.value}",
            group_short_name=f"ops{spec.environment.short}",
            location="Global",
            enabled=True,
            email_receivers=self._email_receivers(),
            tags=self._args.shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _create_automation_group(self) -> monitor.ActionGroup:
        """Budget notifications go to the automation (common alert schema) through a secure
        webhook: Azure Monitor authenticates with Entra, so the URL carries no function key."""
        spec = self._args.spec
        app = spec.function_app
        return monitor.ActionGroup(
            f"{self._name}-automation",
            resource_group_name=self._args.shared.resource_group.name,
            action_group_name=f"ag-automation-{spec.prefix}-{spec.environment.value}",
            group_short_name=f"auto{spec.environment.short}",
            location="Global",
            enabled=True,
            webhook_receivers=[
                {
                    "name": "automation-budget",
                    "service_uri": pulumi.Output.concat(
                        "https://",
                        self._args.function_host_name,
                        "/api/",
                        contracts.ROUTE_BUDGET_ALERT,
                    ),
                    "use_common_alert_schema": True,
                    "use_aad_auth": True,
                    "object_id": app.alert_webhook_app_object_id,
                    "identifier_uri": f"api://{app.alert_webhook_app_id}",
                    "tenant_id": self._args.tenant_id,
                }
            ],
            email_receivers=self._email_receivers(),
            tags=self._args.shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
