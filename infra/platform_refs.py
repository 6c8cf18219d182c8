"""What a stamp and its tenants' routes read of the environment's shared platform, as
values: from the platform's own components in a one-stack environment, or from the shared
stack's ``platform`` output (a ``StackReference``) in a shard stack (``placement.shard_stacks``).

Which parts exist is the spec's to say (a private network, the scoring container, the chat
API), so a shard decides its resources from the spec alone and only their ids come from
the reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.network import ALL_ZONES, NetworkRef
from tenancy.errors import ConfigError
from tenancy.spec import PlatformSpec

#: The shared stack's output a shard stack reads (``pulumi stack output platform``).
OUTPUT = "platform"


@dataclass(frozen=True)
class GatewayRef:
    """The tenant gateway (API Management) as routes are added to it."""

    resource_group_name: pulumi.Input[str]
    service_name: pulumi.Input[str]
    principal_id: pulumi.Input[str]
    scoring_api_id: pulumi.Input[str]  # the scoring API's resource id
    genai_api_id: pulumi.Input[str] | None = None  # the chat API's, when a tenant chats

    def common(self) -> dict[str, pulumi.Input[str]]:
        return {"resource_group_name": self.resource_group_name, "service_name": self.service_name}


@dataclass(frozen=True)
class PlatformRefs:
    subscription_id: pulumi.Input[str]  # the platform's
    resource_group_name: pulumi.Input[str]
    log_analytics_id: pulumi.Input[str]
    app_insights_id: pulumi.Input[str]
    ml_registry_id: pulumi.Input[str]
    ml_registry_name: pulumi.Input[str]
    automation_principal_id: pulumi.Input[str]
    scorer_role_name: pulumi.Input[str]  # the custom scorer role's GUID name
    operations_group_id: pulumi.Input[str]
    automation_group_id: pulumi.Input[str]
    storage_account_name: pulumi.Input[str]
    storage_blob_endpoint: pulumi.Input[str]
    storage_id: pulumi.Input[str]  # where Event Grid dead-letters
    function_app_id: pulumi.Input[str]  # the automation, Event Grid's destination
    gateway: GatewayRef
    serving_environment_id: pulumi.Input[str] | None = None
    network: NetworkRef | None = None
    # What a deployment naming the scoring container, and an event subscription naming a
    # function, must wait for when it is in the same stack (a shard's shared stack is
    # deployed before it).
    serving_ready: Sequence[pulumi.Resource] = field(default_factory=tuple)
    code_ready: Sequence[pulumi.Resource] = field(default_factory=tuple)

    def function_id(self, function_name: str) -> pulumi.Output[str]:
        """Resource id of one function, as Event Grid's AzureFunction destination wants it."""
        return pulumi.Output.concat(self.function_app_id, "/functions/", function_name)

    def scorer_role_in(self, subscription_id: pulumi.Input[str]) -> pulumi.Output[str]:
        """The custom scorer role's id as an assignment in ``subscription_id`` names it."""
        return pulumi.Output.concat(
            "/subscriptions/",
            subscription_id,
            "/providers/Microsoft.Authorization/roleDefinitions/",
            self.scorer_role_name,
        )

    def exported(self) -> dict[str, Any]:
        """The shared stack's ``platform`` output: every value here, by field name."""
        values: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "subscription_id",
                "resource_group_name",
                "log_analytics_id",
                "app_insights_id",
                "ml_registry_id",
                "ml_registry_name",
                "automation_principal_id",
                "scorer_role_name",
                "operations_group_id",
                "automation_group_id",
                "storage_account_name",
                "storage_blob_endpoint",
                "storage_id",
                "function_app_id",
                "serving_environment_id",
            )
        }
        gateway = self.gateway
        values["gateway"] = {
            "resource_group_name": gateway.resource_group_name,
            "service_name": gateway.service_name,
            "principal_id": gateway.principal_id,
            "scoring_api_id": gateway.scoring_api_id,
            "genai_api_id": gateway.genai_api_id,
        }
        if self.network is not None:
            values["network"] = {
                "endpoints_subnet_id": self.network.endpoints_subnet_id,
                "zone_ids": dict(self.network.zone_ids),
            }
        return values

    @classmethod
    def from_output(cls, spec: PlatformSpec, platform: pulumi.Output[Any]) -> PlatformRefs:
        """The refs a shard stack reads from the shared stack's ``platform`` output. What
        exists (network, scoring container, chat API) is the spec's to say."""

        def at(*path: str) -> pulumi.Output[str]:
            def pick(value: Any) -> str:
                for key in path:
                    if not isinstance(value, Mapping) or value.get(key) is None:
                        raise ConfigError.single(
                            "the shared stack",
                            f"{OUTPUT}.{'.'.join(path)}",
                            "missing: `pulumi up` the environment's shared stack (with "
                            "placement.shard_stacks) before its shard stacks",
                        )
                    value = value[key]
                return str(value)

            return platform.apply(pick)

        lean = any(
            spec.tiers.profile(tier).serving_runtime == "lean" for tier in ("dedicated", "pooled")
        )
        chats = any(t.genai is not None for t in spec.tenants)
        network = None
        if spec.networking.private:
            zones = {zone: at("network", "zone_ids", zone) for zone in ALL_ZONES}
            network = NetworkRef(spec.location, at("network", "endpoints_subnet_id"), zones)
        gateway = GatewayRef(
            resource_group_name=at("gateway", "resource_group_name"),
            service_name=at("gateway", "service_name"),
            principal_id=at("gateway", "principal_id"),
            scoring_api_id=at("gateway", "scoring_api_id"),
            genai_api_id=at("gateway", "genai_api_id") if chats else None,
        )
        return cls(
            subscription_id=at("subscription_id"),
            resource_group_name=at("resource_group_name"),
            log_analytics_id=at("log_analytics_id"),
            app_insights_id=at("app_insights_id"),
            ml_registry_id=at("ml_registry_id"),
            ml_registry_name=at("ml_registry_name"),
            automation_principal_id=at("automation_principal_id"),
            scorer_role_name=at("scorer_role_name"),
            operations_group_id=at("operations_group_id"),
            automation_group_id=at("automation_group_id"),
            storage_account_name=at("storage_account_name"),
            storage_blob_endpoint=at("storage_blob_endpoint"),
            storage_id=at("storage_id"),
            function_app_id=at("function_app_id"),
            gateway=gateway,
            serving_environment_id=at("serving_environment_id") if lean else None,
            network=network,
        )
