"""The whole program, per example stack, checked on the inputs of what it would create."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from xml.etree import ElementTree  # the policies parsed are our own output

import pytest

from infra.offline import AzureMocks, OfflineRun, RecordedResource
from infra.stamp import budget_start
from tenancy import PlatformSpec, contracts
from tenancy.instance_types import INSTANCE_TYPES
from tenancy.rbac import PROJECT_PERSONAS, ROLE_IDS, grants, table_for
from tests.conftest import STACKS
from tests.infra.conftest import of_type, scoring_policies, stamp_of, tenant_of

ROLE_BY_GUID = {guid: code for code, guid in ROLE_IDS.items()}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("stack", STACKS)
def test_every_event_subscription_retries_and_dead_letters(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    run = planned[stack]
    subscriptions = of_type(run, "eventgrid:SystemTopicEventSubscription")
    stamps = len(specs[stack].dedicated_tenants) + len(specs[stack].pools)
    assert len(subscriptions) == 2 * stamps
    for sub in subscriptions:
        dead_letter = sub.inputs["deadLetterWithResourceIdentity"]["deadLetterDestination"]
        assert dead_letter["blobContainerName"] == contracts.CONTAINER_DEAD_LETTER, sub.urn
        assert dead_letter["endpointType"] == "StorageBlob", sub.urn
        assert sub.inputs["retryPolicy"]["maxDeliveryAttempts"] >= 1, sub.urn
        assert sub.inputs["destination"]["endpointType"] == "AzureFunction", sub.urn
    handled = {s.inputs["filter"]["includedEventTypes"][0] for s in subscriptions}
    assert handled == {contracts.EVENT_MODEL_REGISTERED, contracts.EVENT_RUN_STATUS_CHANGED}


@pytest.mark.parametrize("stack", STACKS)
def test_every_dedicated_tenant_and_pool_has_its_budget(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    run, spec = planned[stack], specs[stack]
    by_owner: dict[str, RecordedResource] = {}
    for budget in of_type(run, "consumption:Budget"):
        owner = tenant_of(run, budget) or stamp_of(run, budget)
        assert owner is not None
        by_owner[owner] = budget
        # W8: no budget claims a tag filter (a pool's resources carry the pool's tag only).
        assert "filter" not in budget.inputs, budget.urn
    owners: list[tuple[str, Any, str]] = [
        (t.id, t.budget, f"-tenant-{t.id}") for t in spec.dedicated_tenants
    ]
    owners += [(f"pool-{p.id}", p.budget, f"-pool-{p.id}") for p in spec.pools]
    for owner, expected, scope in owners:
        budget = by_owner.pop(owner)
        notifications = budget.inputs["notifications"]
        assert sorted(n["threshold"] for n in notifications.values()) == sorted(
            t.percent for t in expected.thresholds
        ), budget.urn
        assert {n["thresholdType"] for n in notifications.values()} == {
            t.type for t in expected.thresholds
        }
        assert all(n["contactEmails"] == expected.contacts for n in notifications.values())
        assert budget.inputs["amount"] == expected.amount
        assert budget.inputs["scope"].endswith(scope), budget.urn
    assert by_owner == {}  # pooled tenants have no Azure budget of their own


def test_budgets_start_in_the_month_of_the_first_up_and_keep_that_start(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    """D2: the start date is the first of the month `pulumi up` runs in (Azure refuses a past
    start outside the current period), and it is under ignore_changes: Azure never changes a
    budget's start, so a later run re-sends the creation date instead of churning."""
    this_month = datetime.now(UTC).date().replace(day=1)
    for run in planned.values():
        budgets = of_type(run, "consumption:Budget")
        assert budgets
        for budget in budgets:
            assert budget.inputs["timePeriod"]["startDate"] == f"{this_month}T00:00:00Z"
            assert "timePeriod" in budget.ignore_changes, budget.urn
    spec = specs["dev"]
    budget = spec.dedicated_tenants[0].budget
    assert budget_start(budget, spec, date(2027, 2, 28)) == date(2027, 2, 1)
    fixed = spec.model_copy(
        update={
            "budget_policy": spec.budget_policy.model_copy(update={"start_date": date(2027, 1, 1)})
        }
    )
    assert budget_start(budget, fixed, date(2027, 2, 28)) == date(2027, 1, 1)


def _owners(run: OfflineRun) -> dict[str, str]:
    """ARM id -> tenant, for the resources one tenant must never reference of another."""
    guarded = {
        "azure-native:managedidentity:UserAssignedIdentity",
        "azure-native:keyvault:Vault",
        "azure-native:storage:StorageAccount",
        "azure-native:containerregistry:Registry",
        "azure-native:machinelearningservices:OnlineEndpoint",
        "azure-native:machinelearningservices:BatchEndpoint",
        "azure-native:machinelearningservices:Workspace",
    }
    owners = {}
    for record in run.custom_resources():
        tenant = tenant_of(run, record) or stamp_of(run, record)
        if record.type in guarded and tenant and tenant != "platform":
            owners[_resource_id(run, record)] = tenant
    return owners


def _resource_id(run: OfflineRun, record: RecordedResource) -> str:
    return AzureMocks._resource_id(record.type, record.state["name"], record.inputs)


@pytest.mark.parametrize("stack", STACKS)
def test_no_tenant_references_another_tenants_resources(
    planned: dict[str, OfflineRun], stack: str
) -> None:
    run = planned[stack]
    owners = _owners(run)
    assert len(set(owners.values())) >= 3
    checked = 0
    for record in run.custom_resources():
        me = tenant_of(run, record) or stamp_of(run, record)
        if me is None or me == "platform":
            continue
        for value in _strings(record.inputs):
            for resource_id, owner in owners.items():
                if owner != me and value.startswith(resource_id):
                    pytest.fail(f"{record.urn} ({me}) references {owner}'s {resource_id}")
        checked += 1
    assert checked > 50


@pytest.mark.parametrize("stack", STACKS)
def test_every_taggable_resource_has_the_mandatory_tags(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    run = planned[stack]
    taggable = [r for r in run.custom_resources() if "tags" in r.inputs]
    assert len(taggable) > 20
    for record in taggable:
        tags = record.inputs["tags"]
        assert set(contracts.MANDATORY_TAGS) <= set(tags), record.urn
        assert tags[contracts.TAG_ENV] == specs[stack].environment.value, record.urn
        tenant = tenant_of(run, record)
        if tenant:
            assert tags[contracts.TAG_TENANT] == tenant, record.urn


def _assignments(run: OfflineRun, scope: str) -> set[tuple[str, str]]:
    """(principal, role code) of the standing and just-in-time grants on exactly ``scope``."""
    found = set()
    for type_name in ("authorization:RoleAssignment", "authorization:PimRoleEligibilitySchedule"):
        for record in of_type(run, type_name):
            if record.inputs["scope"] == scope:
                guid = record.inputs["roleDefinitionId"].rsplit("/", 1)[-1]
                found.add((record.inputs["principalId"], ROLE_BY_GUID.get(guid, guid)))
    return found


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_role_assignments_match_the_persona_table(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    run, spec = planned[stack], specs[stack]
    tenant = spec.tenant("contoso")
    table = table_for(spec.environment.is_production)
    workspace = next(
        r
        for r in of_type(run, "machinelearningservices:Workspace")
        if stamp_of(run, r) == "tenant-contoso"
    )
    scope = _resource_id(run, workspace)
    actual = _assignments(run, scope)
    persona_groups = tenant.personas.model_dump()
    expected = {
        (group, g.role_code)
        for g in grants(table, PROJECT_PERSONAS)
        if g.column == "aml_workspace"
        for group in persona_groups[g.persona]
    }
    platform_groups = spec.personas.model_dump()
    expected |= {
        (group, g.role_code)
        for g in grants(table, ("platform_support", "cicd", "monitoring", "data_governance"))
        if g.column == "aml_workspace"
        for group in platform_groups[g.persona]
    }
    groups = {p for p, _ in actual if _is_group(p, spec)}
    assert {a for a in actual if a[0] in groups} == expected
    # The automation identity may run deployments and scale compute on the workspace.
    assert {role for _, role in actual if role in ("ADS", "ACO")} >= {"ADS", "ACO"}


def _is_group(principal: str, spec: PlatformSpec) -> bool:
    groups = set(_strings(spec.personas.model_dump()))
    for tenant in spec.tenants:
        groups |= set(_strings(tenant.personas.model_dump()))
    for pool in spec.pools:
        groups |= set(_strings(pool.personas.model_dump()))
    return principal in groups


def test_pooled_tenants_people_get_no_role_on_the_shared_pool(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["prod"], specs["prod"]
    pooled_groups = {
        group
        for t in spec.tenants
        if t.tier == "pooled"
        for group in _strings(t.personas.model_dump())
    }
    assert pooled_groups, "the prod example gives pooled tenants personas"
    principals = {
        r.inputs["principalId"]
        for r in of_type(run, "authorization:RoleAssignment")
        + of_type(run, "authorization:PimRoleEligibilitySchedule")
    }
    assert not principals & pooled_groups


def test_prod_is_private_end_to_end(planned: dict[str, OfflineRun]) -> None:
    run = planned["prod"]
    workspaces = of_type(run, "machinelearningservices:Workspace")
    for workspace in workspaces:
        assert workspace.inputs["publicNetworkAccess"] == "Disabled", workspace.urn
        assert workspace.inputs["managedNetwork"]["isolationMode"] == "AllowOnlyApprovedOutbound"
    for endpoint in of_type(run, "machinelearningservices:OnlineEndpoint"):
        assert endpoint.inputs["properties"]["publicNetworkAccess"] == "Disabled", endpoint.urn
    for deployment in of_type(run, "machinelearningservices:OnlineDeployment"):
        assert deployment.inputs["sku"]["capacity"] >= 2, deployment.urn
        assert deployment.inputs["properties"]["egressPublicNetworkAccess"] == "Disabled"
    targets = {
        pe.inputs["privateLinkServiceConnections"][0]["privateLinkServiceId"]
        for pe in of_type(run, "network:PrivateEndpoint")
    }
    assert {_resource_id(run, w) for w in workspaces} <= targets
    for compute in of_type(run, "machinelearningservices:Compute"):
        assert compute.inputs["properties"]["properties"]["enableNodePublicIp"] is False


def test_dev_is_public_and_has_no_private_endpoints(planned: dict[str, OfflineRun]) -> None:
    run = planned["dev"]
    assert not of_type(run, "network:PrivateEndpoint")
    assert all(
        w.inputs["publicNetworkAccess"] == "Enabled"
        for w in of_type(run, "machinelearningservices:Workspace")
    )


def test_restricted_tenants_get_a_customer_managed_key(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["local"], specs["local"]
    for workspace in of_type(run, "machinelearningservices:Workspace"):
        stamp = stamp_of(run, workspace)
        restricted = stamp == "tenant-adatum"
        assert spec.tenant("adatum").data_classification == "restricted"
        assert ("encryption" in workspace.inputs) is restricted, workspace.urn
        if restricted:
            assert workspace.inputs["encryption"]["status"] == "Enabled"


def test_gateway_routes_each_tenant_with_its_limits(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run, spec = planned["local"], specs["local"]
    policies = {tenant_of(run, p): p for p in scoring_policies(run)}
    assert set(policies) == {t.id for t in spec.tenants}
    for tenant in spec.tenants:
        xml = ElementTree.fromstring(policies[tenant.id].inputs["value"])
        limit = xml.find("./inbound/rate-limit")
        assert limit is not None and limit.get("calls") == str(tenant.quota.rate_limit_per_minute)
        header = xml.find("./inbound/set-header[@name='x-tenant-id']")
        assert header is not None and header.get("exists-action") == "override"
        assert header.findtext("value") == tenant.id
        backend = xml.find("./inbound/set-backend-service")
        assert backend is not None and backend.get("backend-id") == tenant.stamp_key
        concurrency = xml.find("./backend/limit-concurrency")
        assert concurrency is not None and concurrency.get("max-count") == str(
            tenant.quota.max_concurrency
        )
        deletes_deployment = xml.find("./inbound/set-header[@name='azureml-model-deployment']")
        assert (deletes_deployment is not None) is (tenant.tier == "pooled")
    subscriptions = of_type(run, "apimanagement:Subscription")
    assert {tenant_of(run, s) for s in subscriptions} == {t.id for t in spec.tenants}
    assert all(
        "primaryKey" not in s.inputs and s.inputs["allowTracing"] is False for s in subscriptions
    )


def test_role_assignment_names_are_stable_guids(planned: dict[str, OfflineRun]) -> None:
    names = [
        r.inputs["roleAssignmentName"]
        for r in of_type(planned["local"], "authorization:RoleAssignment")
    ]
    assert len(names) == len(set(names))
    assert all(uuid.UUID(n) for n in names)


#: Maps whose keys are names chosen by us or by Azure, not schema properties.
FREE_FORM_MAPS = {
    "tags",
    "traffic",
    "mirrorTraffic",
    "notifications",
    "metadata",
    "collections",
    "userAssignedIdentities",
    "customProperties",
    "environmentVariables",
}


def _snake_case_keys(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if "_" in key and not path.endswith(tuple(FREE_FORM_MAPS)):
                yield f"{path}.{key}"
            if key not in FREE_FORM_MAPS:
                yield from _snake_case_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _snake_case_keys(item, f"{path}[{i}]")


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_every_input_reaches_azure_in_its_wire_names(
    planned: dict[str, OfflineRun], stack: str
) -> None:
    """A plain dict given to a union-typed property is not translated by the SDK and would
    reach Azure with snake_case keys; this catches that for every resource."""
    for record in planned[stack].custom_resources():
        if record.type == contracts.DYNAMIC_RESOURCE_TYPE:
            continue  # the program's own resources: their inputs never reach Azure as such
        bad = list(_snake_case_keys(record.inputs))
        assert not bad, f"{record.urn}: keys not in wire form: {bad}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stamp_scales_to_zero_and_has_its_first_deployment(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    run, spec = planned[stack], specs[stack]
    stamps = len(spec.dedicated_tenants) + len(spec.pools)
    clusters = of_type(run, "machinelearningservices:Compute")
    assert len(clusters) == stamps
    for cluster in clusters:
        scale = cluster.inputs["properties"]["properties"]["scaleSettings"]
        assert scale["minNodeCount"] == 0, cluster.urn
        assert scale["nodeIdleTimeBeforeScaleDown"].startswith("PT"), cluster.urn
    endpoints = of_type(run, "machinelearningservices:OnlineEndpoint")
    deployments = of_type(run, "machinelearningservices:OnlineDeployment")
    assert len(endpoints) == len(deployments) == stamps
    for endpoint in endpoints:
        # The automation's first rollout switches a deployment to 100 % (D8).
        assert "traffic" not in endpoint.inputs["properties"], endpoint.urn
    for deployment in deployments:
        properties = deployment.inputs["properties"]
        assert deployment.inputs["deploymentName"] == contracts.FIRST_DEPLOYMENT
        assert properties["requestSettings"]["requestTimeout"].startswith("PT"), deployment.urn
        assert properties["livenessProbe"] and properties["readinessProbe"], deployment.urn
    for batch in of_type(run, "machinelearningservices:BatchDeployment"):
        assert batch.inputs["properties"]["outputAction"] == "AppendRow", batch.urn
        assert batch.inputs["properties"]["outputFileName"] == contracts.BATCH_OUTPUT_FILE


@pytest.mark.parametrize("stack", STACKS)
def test_the_function_app_sits_behind_app_service_authentication(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec], stack: str
) -> None:
    """W2: Entra sign-in in front of every HTTP function; the tokens are for the automation's
    application; Event Grid's webhook stays reachable with the host's system key."""
    run, spec = planned[stack], specs[stack]
    (app,) = of_type(run, "web:WebApp")
    (auth,) = of_type(run, "web:WebAppAuthSettingsV2")
    assert auth.inputs["name"] == app.inputs["name"], auth.urn
    assert auth.parent == app.urn, auth.urn
    assert auth.inputs["platform"]["enabled"] is True, auth.urn
    validation = auth.inputs["globalValidation"]
    assert validation["requireAuthentication"] is True, auth.urn
    assert validation["unauthenticatedClientAction"] == "Return401", auth.urn
    assert validation["excludedPaths"] == ["/runtime/webhooks/eventgrid"], auth.urn
    entra = auth.inputs["identityProviders"]["azureActiveDirectory"]
    app_id = spec.function_app.alert_webhook_app_id
    assert entra["enabled"] is True and entra["registration"]["clientId"] == app_id, auth.urn
    assert entra["registration"]["openIdIssuer"].startswith("https://login.microsoftonline.com/")
    assert entra["validation"]["allowedAudiences"] == contracts.entra_audiences(app_id)
    # The action group's secure webhook asks Entra for a token of the same application.
    (group,) = [
        g for g in of_type(run, "monitor:ActionGroup") if g.inputs.get("webhookReceivers")
    ]
    receiver = group.inputs["webhookReceivers"][0]
    assert receiver["useAadAuth"] is True
    assert receiver["identifierUri"] in entra["validation"]["allowedAudiences"]
    assert auth.inputs["login"]["tokenStore"]["enabled"] is False, auth.urn


def test_each_deployment_runs_a_scoring_worker_per_vcpu_and_takes_as_many_requests(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    """The inference server's default is one worker: a 4-core instance would score on one
    core. Each first deployment sets WORKER_COUNT to its instance type's vCPUs, and lets as
    many requests in at once (or what the spec asks)."""
    seen = set()
    pools = {
        stack: {t.stamp_key for t in spec.tenants if t.tier == "pooled"}
        for stack, spec in specs.items()
    }
    for stack, run in planned.items():
        for deployment in of_type(run, "machinelearningservices:OnlineDeployment"):
            properties = deployment.inputs["properties"]
            instance = properties["instanceType"]
            workers = INSTANCE_TYPES[instance].vcpus
            variables = properties["environmentVariables"]
            assert variables[contracts.SETTING_SCORING_WORKERS] == str(workers), deployment.urn
            if stamp_of(run, deployment) in pools[stack]:
                # Half the instance's memory for models, split among its workers.
                memory = INSTANCE_TYPES[instance].memory_gib * 2**30
                cache = int(variables[contracts.SETTING_MODEL_CACHE_BYTES])
                assert cache * workers == pytest.approx(memory / 2, abs=workers), deployment.urn
            else:
                assert set(variables) == {contracts.SETTING_SCORING_WORKERS}, deployment.urn
            concurrency = properties["requestSettings"]["maxConcurrentRequestsPerInstance"]
            assert concurrency == workers, deployment.urn
            seen.add((stack, instance, workers))
    # prod's contoso runs on Standard_F8s_v2 (8 vCPUs), the others on the default DS3_v2 (4).
    assert ("prod", "Standard_F8s_v2", 8) in seen
    assert ("dev", "Standard_DS3_v2", 4) in seen
