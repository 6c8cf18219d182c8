"""Event Grid wiring: every ML workspace publishes its events to the automation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
from pulumi_azure_native import eventgrid, machinelearningservices, resources

from infra.common import Principal, assign_role
from tenancy import contracts

if TYPE_CHECKING:
    from infra.stamp import StampArgs

#: Event Grid retries for a day with up to 30 attempts before dead-lettering.
MAX_DELIVERY_ATTEMPTS = 30
EVENT_TTL_MINUTES = 1440

SUBSCRIPTIONS = {
    "model-registered": (contracts.EVENT_MODEL_REGISTERED, contracts.FUNCTION_MODEL_REGISTERED),
    "run-status": (contracts.EVENT_RUN_STATUS_CHANGED, contracts.FUNCTION_RUN_STATUS_CHANGED),
}


def subscribe_workspace_events(
    name: str,
    *,
    args: StampArgs,
    tags: dict[str, str],
    resource_group: resources.ResourceGroup,
    workspace: machinelearningservices.Workspace,
    parent: pulumi.Resource,
) -> eventgrid.SystemTopic:
    """A system topic on the workspace and one subscription per handled event type, each
    with a retry policy and a dead-letter container written with the topic's identity."""
    platform = args.platform
    code = list(platform.code_ready)
    topic = eventgrid.SystemTopic(
        f"{name}-events",
        resource_group_name=resource_group.name,
        system_topic_name=f"evgt-{name}",
        location=args.region,
        source=workspace.id,
        topic_type="Microsoft.MachineLearningServices.Workspaces",
        identity={"type": "SystemAssigned"},
        tags=tags,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    dead_letter_container = pulumi.Output.concat(
        platform.storage_id, "/blobServices/default/containers/", contracts.CONTAINER_DEAD_LETTER
    )
    grant = assign_role(
        f"{name}-events-deadletter",
        principal=Principal(f"{name}-events", topic.identity.principal_id, "ServicePrincipal"),
        role_code="BlobDataContributor",
        scope=dead_letter_container,
        scope_key=f"{args.spec.prefix}/{args.spec.environment.value}/{name}/deadletter",
        subscription_id=args.subscription_id,
        parent=topic,
        description="Event Grid dead letters",
    )
    for suffix, (event_type, function_name) in SUBSCRIPTIONS.items():
        eventgrid.SystemTopicEventSubscription(
            f"{name}-events-{suffix}",
            resource_group_name=resource_group.name,
            system_topic_name=topic.name,
            event_subscription_name=suffix,
            destination={
                "endpoint_type": "AzureFunction",
                "resource_id": platform.function_id(function_name),
                "max_events_per_batch": 1,
                "preferred_batch_size_in_kilobytes": 64,
            },
            filter={"included_event_types": [event_type]},
            event_delivery_schema="EventGridSchema",
            retry_policy={
                "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
                "event_time_to_live_in_minutes": EVENT_TTL_MINUTES,
            },
            dead_letter_with_resource_identity={
                "identity": {"type": "SystemAssigned"},
                "dead_letter_destination": {
                    "endpoint_type": "StorageBlob",
                    "resource_id": platform.storage_id,
                    "blob_container_name": contracts.CONTAINER_DEAD_LETTER,
                },
            },
            # The destination is a function of the app's code: it exists once the package
            # is uploaded ("Destination endpoint not found" before), so the subscription waits
            # for the upload as well as for its dead-letter grant.
            opts=pulumi.ResourceOptions(parent=topic, depends_on=[grant, *code]),
        )
    return topic
