"""Stamps in several regions: the gateway gets a regional gateway in each (Premium), and
Front Door sends tenants to the nearest healthy one; one region needs neither."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from infra.front_door import (
    HEALTH_PATH,
    front_door_only_policy,
    gateway_regions,
    regional_host,
)
from mlops.plan import build_plan
from tenancy import naming, parse_platform_spec
from tenancy.errors import ConfigError
from tenancy.placement import resolve
from tests.tenancy.conftest import stack_document

SUB_B = "11111111-2222-4333-8444-555555555555"


def _two_regions(sku: str = "Premium") -> dict[str, Any]:
    document = stack_document("dev")
    document["gateway"]["sku"] = sku
    document["placement"] = {
        "targets": [
            {"id": "weu-a", "region": "westeurope"},
            {"id": "neu-b", "subscription_id": SUB_B, "region": "northeurope"},
        ],
        "pins": {"tenant-contoso": "neu-b"},
    }
    return document


def _of_type(plan: Any, kind: str) -> list[dict[str, Any]]:
    return [r for r in plan.resources if r["type"] == f"azure-native:{kind}"]


def test_stamps_in_two_regions_get_a_regional_gateway_and_front_door(tmp_path: Path) -> None:
    spec = parse_platform_spec(_two_regions())
    assert gateway_regions(resolve(spec).spec) == ["westeurope", "northeurope"]
    plan = build_plan(spec, "dev", root=tmp_path, policies=None)
    [service] = _of_type(plan, "apimanagement:ApiManagementService")
    assert service["inputs"]["location"] == "westeurope"
    assert service["inputs"]["additionalLocations"] == [
        {"location": "northeurope", "sku": {"name": "Premium", "capacity": 1}}
    ]
    name = naming.api_management(spec.prefix, spec.environment, spec.installation)
    origins = _of_type(plan, "cdn:AFDOrigin")
    assert sorted(o["inputs"]["hostName"] for o in origins) == sorted(
        regional_host(name, region) for region in ("westeurope", "northeurope")
    )
    assert all(o["inputs"]["originHostHeader"] == o["inputs"]["hostName"] for o in origins)
    assert {(o["inputs"]["priority"], o["inputs"]["weight"]) for o in origins} == {(1, 1000)}
    [group] = _of_type(plan, "cdn:AFDOriginGroup")
    assert group["inputs"]["healthProbeSettings"]["probePath"] == HEALTH_PATH
    # API Management takes only what came through this Front Door profile.
    [guard] = _of_type(plan, "apimanagement:Policy")
    assert guard["inputs"]["serviceName"] == name
    # The profile's id, as Azure gives it (the offline mocks draw one per profile).
    [profile_id] = re.findall(r"<value>([0-9a-f-]{36})</value>", guard["inputs"]["value"])
    assert guard["inputs"]["value"] == front_door_only_policy(profile_id)
    assert '<check-header name="X-Azure-FDID"' in guard["inputs"]["value"]
    [route] = _of_type(plan, "cdn:Route")
    assert route["inputs"]["patternsToMatch"] == ["/*"]
    assert route["inputs"]["supportedProtocols"] == ["Https"]
    assert route["inputs"]["forwardingProtocol"] == "HttpsOnly"


def test_one_region_needs_neither(tmp_path: Path) -> None:
    plan = build_plan(parse_platform_spec(stack_document("dev")), "dev", root=tmp_path,
                      policies=None)  # fmt: skip
    [service] = _of_type(plan, "apimanagement:ApiManagementService")
    assert service["inputs"].get("additionalLocations") is None
    assert not [r for r in plan.resources if r["type"].startswith("azure-native:cdn:")]
    assert not _of_type(plan, "apimanagement:Policy")


def test_a_second_region_without_premium_is_refused_naming_the_sku() -> None:
    with pytest.raises(ConfigError, match=r"northeurope need gateway\.sku Premium"):
        parse_platform_spec(_two_regions(sku="Developer"))
