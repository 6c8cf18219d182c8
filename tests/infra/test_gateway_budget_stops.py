"""A pooled tenant's metered budget stop on Azure: a named value per pooled tenant that the
automation owns, read by the tenant's product policy, which refuses that tenant alone; and
the automation's right to set it, and nothing more, at API Management."""

from __future__ import annotations

from xml.etree import ElementTree

from infra.offline import OfflineRun, RecordedResource
from tenancy import PlatformSpec, contracts
from tenancy.permissions import NAMED_VALUE_WRITE
from tests.infra.conftest import of_type, scoring_policies, tenant_of


def _stops(run: OfflineRun) -> dict[str, RecordedResource]:
    return {
        v.inputs["namedValueId"]: v
        for v in of_type(run, "apimanagement:NamedValue")
        if v.inputs["namedValueId"].startswith("budget-stop-")
    }


def test_each_pooled_tenant_has_a_stop_the_automation_owns_and_no_dedicated_tenant_has(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    for stack, run in planned.items():
        stops = _stops(run)
        pooled = {t.id for t in specs[stack].tenants if t.tier == "pooled"}
        assert set(stops) == {contracts.budget_stop_named_value(t) for t in pooled}, stack
        for name, stop in stops.items():
            assert stop.inputs["value"] == contracts.BUDGET_STOP_NONE, name
            # `pulumi up` never lifts a stop the automation set.
            assert stop.ignore_changes == ("value",), name


def test_a_pooled_tenants_policy_refuses_it_alone_while_its_stop_is_set(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    run = planned["prod"]
    stops = _stops(run)
    for policy in scoring_policies(run):
        tenant = tenant_of(run, policy)
        assert tenant is not None
        xml = ElementTree.fromstring(policy.inputs["value"])
        inbound = list(xml.find("inbound") or [])
        read = xml.find("./inbound/set-variable[@name='budgetStop']")
        if specs["prod"].tenant(tenant).tier == "dedicated":
            assert read is None, policy.urn
            continue
        named_value = contracts.budget_stop_named_value(tenant)
        assert read is not None and read.get("value") == f"{{{{{named_value}}}}}", policy.urn
        # Created before the policy that names it (API Management refuses a policy naming a
        # named value it does not have).
        assert stops[named_value].urn in policy.dependencies, policy.urn
        [refusal] = [
            when
            for when in xml.findall("./inbound/choose/when")
            if "budgetStop" in str(when.get("condition"))
        ]
        assert refusal.get("condition") == (
            f'@((string)context.Variables["budgetStop"] != "{contracts.BUDGET_STOP_NONE}")'
        )
        status = refusal.find("./return-response/set-status")
        assert status is not None and status.get("code") == "403"
        body = str(refusal.findtext("./return-response/set-body"))
        assert '"budget_exceeded"' in body and f"the budget of tenant {tenant} is spent" in body
        # Scores are refused before the request id, the tenant header and the backend; the
        # labels of requests already served are still taken (the feedback branch is above).
        order = [e.get("name") or e.tag for e in inbound]
        assert order.index("budgetStop") < order.index("requestId"), order
        assert order.index("budgetStop") < order.index("set-backend-service"), order


def test_the_automation_may_set_named_values_at_the_gateway_and_nothing_else(
    planned: dict[str, OfflineRun],
) -> None:
    run = planned["prod"]
    [service] = of_type(run, "apimanagement:ApiManagementService")
    [role] = [
        r
        for r in of_type(run, "authorization:RoleDefinition")
        if NAMED_VALUE_WRITE in r.inputs["permissions"][0]["actions"]
    ]
    assert set(role.inputs["permissions"][0]["actions"]) == {
        "Microsoft.ApiManagement/service/namedValues/read",
        NAMED_VALUE_WRITE,
    }
    [grant] = [
        a
        for a in of_type(run, "authorization:RoleAssignment")
        if role.urn in a.property_dependencies.get("roleDefinitionId", frozenset())
    ]
    assert service.urn in grant.property_dependencies["scope"]
    identities = [
        i for i in of_type(run, "managedidentity:UserAssignedIdentity") if "automation" in i.name
    ]
    assert [i.urn for i in identities] == sorted(grant.property_dependencies["principalId"])
