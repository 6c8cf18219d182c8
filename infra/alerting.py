"""Action groups: people for operational alerts, the automation for budget alerts."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

from infra.shared import SharedServices
from tenancy import contracts
from tenancy.spec import PlatformSpec


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
        self.register_outputs(
            {
                "operationsActionGroupId": self.operations.id,
                "automationActionGroupId": self.automation.id,
            }
        )

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
