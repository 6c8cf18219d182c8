"""A stack placed on two subscriptions and regions plans each stamp where tenancy.placement
put it: an explicit provider for the other subscription, the stamp's resources in its
region, role definitions of its subscription, and capacity counted per target."""

from __future__ import annotations

import json
from pathlib import Path

from mlops.plan import build_plan, render_text
from tenancy import parse_platform_spec
from tenancy.placement import write_record
from tests.tenancy.conftest import stack_document

SUB_B = "11111111-2222-4333-8444-555555555555"


def test_a_pinned_stamp_is_planned_in_its_subscription_and_region(tmp_path: Path) -> None:
    document = stack_document("dev")
    document["placement"] = {
        "targets": [
            {"id": "weu-a", "region": "westeurope"},
            {"id": "neu-b", "subscription_id": SUB_B, "region": "northeurope"},
        ],
        "pins": {"tenant-contoso": "neu-b"},
    }
    document["gateway"]["sku"] = "Premium"  # regional gateways (infra.front_door)
    spec = parse_platform_spec(document)
    plan = build_plan(spec, "dev", root=tmp_path)
    assert [v for v in plan.violations if v.level == "mandatory"] == []
    [provider] = [r for r in plan.resources if r["type"] == "pulumi:providers:azure-native"]
    assert provider["inputs"]["subscriptionId"] == SUB_B
    contoso = [r for r in plan.resources if r["stamp"] == "tenant-contoso"]
    located = {r["inputs"]["location"] for r in contoso if "location" in r["inputs"]}
    assert located <= {"northeurope", "global"} and "northeurope" in located
    grants = [r for r in contoso if r["type"] == "azure-native:authorization:RoleAssignment"]
    assert grants and all(
        f"/subscriptions/{SUB_B}/" in r["inputs"]["roleDefinitionId"] for r in grants
    )
    # The gateway's right to call contoso's AI account is named in contoso's subscription.
    [openai_user] = [r for r in plan.resources if "tenant-contoso-openai-user" in r["urn"]]
    assert openai_user["inputs"]["roleDefinitionId"].startswith(f"/subscriptions/{SUB_B}/")
    adatum = [
        r for r in plan.resources if r["stamp"] == "tenant-adatum" and "location" in r["inputs"]
    ]
    assert {r["inputs"]["location"] for r in adatum} <= {"westeurope", "global"}
    endpoints = {(u.subscription, u.region): u.used for u in plan.capacity if u.key == "endpoints"}
    assert endpoints[(SUB_B, "northeurope")] == 2  # contoso's online and batch endpoints
    text = render_text(plan, spec)
    assert "neu-b (11111111-2222-4333-8444-555555555555, northeurope): 1 stamps" in text
    # Kept with the stack, a later plan shows no change; a changed pin is a named move.
    write_record(tmp_path, "dev", plan.placement)  # type: ignore[arg-type]
    document["placement"]["pins"] = {"tenant-contoso": "weu-a"}
    again = build_plan(parse_platform_spec(document), "dev", root=tmp_path, policies=None)
    assert again.placement is not None and again.placement.added == []
    assert "MOVE tenant-contoso: neu-b -> weu-a (pinned)" in render_text(
        again, parse_platform_spec(document)
    )


def test_a_split_pool_is_planned_as_one_stamp_per_shard_and_routed_by_it(
    tmp_path: Path,
) -> None:
    document = stack_document("dev")
    document["pools"][0]["max_tenants"] = 1  # fabrikam and northwind: one shard each
    spec = parse_platform_spec(document)
    plan = build_plan(spec, "dev", root=tmp_path, policies=None)
    assert plan.pools is not None and plan.pools.split == {"shared": ["shared", "shared-2"]}
    stamps = {r["stamp"] for r in plan.resources}
    assert {"pool-shared", "pool-shared-2"} <= stamps
    endpoints = {
        r["stamp"]: r["inputs"]["endpointName"]
        for r in plan.resources
        if r["type"] == "azure-native:machinelearningservices:OnlineEndpoint"
    }
    assert endpoints["pool-shared"] != endpoints["pool-shared-2"]
    # The automation reads the same derived spec: northwind is served by shared-2.
    [app] = [r for r in plan.resources if r["type"] == "azure-native:web:WebApp"]
    settings = {s["name"]: s["value"] for s in app["inputs"]["siteConfig"]["appSettings"]}
    sent = json.loads(settings["TENANT_MLOPS_PLATFORM_SPEC"])
    assert {t["id"]: t.get("pool") for t in sent["tenants"]}["northwind"] == "shared-2"
    # Each tenant's gateway backend is its shard's endpoint.
    backends = {
        r["inputs"]["url"]
        for r in plan.resources
        if r["type"] == "azure-native:apimanagement:Backend"
        and "inference.ml" in r["inputs"]["url"]
    }
    assert {e for e in endpoints.values() if "shared" in e} == {
        url.removeprefix("https://").split(".")[0] for url in backends if "shared" in url
    }
    text = render_text(plan, spec)
    assert "pool shared split in 2: shared, shared-2 (1 + 1 tenants)" in text
    assert "pool shared-2 (shared by northwind)" in text
    assert plan.to_dict()["placement"]["pools"]["members"] == {
        "fabrikam": "shared",
        "northwind": "shared-2",
    }
