"""Component-level checks in the pulumi/examples testing-unit style: the program runs under
mocks inside the test, and assertions run in Output.all(...).apply(check), naming the URN."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from infra.program import deploy, main
from tenancy import load_stack
from tenancy.load import read_yaml
from tests.infra.conftest import Mocks

ROOT = Path(__file__).resolve().parents[2]


@pulumi.runtime.test
def test_gpu_clusters_scale_to_zero_within_the_spec(mocks: Mocks) -> pulumi.Output[None]:
    spec = load_stack("local", ROOT)
    platform = deploy(spec, stack="local")
    contoso = platform.stamps["tenant-contoso"]
    expected = spec.tenant("contoso").compute
    assert expected is not None

    def check(args: list[object]) -> None:
        urn, properties = args
        # A union-typed property comes back in its wire form (camelCase).
        assert isinstance(properties, dict)
        scale = properties["properties"]["scaleSettings"]
        assert scale["minNodeCount"] == 0, f"{urn}: GPU cluster does not scale to zero"
        assert scale["maxNodeCount"] == expected.max_nodes, urn
        assert scale["nodeIdleTimeBeforeScaleDown"] == "PT900S", urn
        assert properties["disableLocalAuth"] is True, f"{urn}: local auth enabled"
        assert properties["properties"]["vmPriority"] == "LowPriority", urn

    return pulumi.Output.all(contoso.compute.urn, contoso.compute.properties).apply(check)


@pulumi.runtime.test
def test_an_endpoint_starts_with_no_traffic_for_the_automation_to_give(
    mocks: Mocks,
) -> pulumi.Output[None]:
    spec = load_stack("local", ROOT)
    platform = deploy(spec, stack="local")
    endpoint = platform.stamps["pool-shared"].online_endpoint
    assert endpoint is not None

    def check(args: list[object]) -> None:
        urn, properties = args
        assert isinstance(properties, dict)
        assert not properties.get("traffic"), f"{urn}: traffic {properties.get('traffic')}"
        assert not properties.get("mirror_traffic"), urn
        assert properties["auth_mode"] == "AADToken", urn
        assert properties["scoring_uri"].endswith(".inference.ml.azure.com/score"), urn

    return pulumi.Output.all(endpoint.urn, endpoint.properties).apply(check)


@pulumi.runtime.test
def test_function_app_settings_carry_the_spec_and_no_key(mocks: Mocks) -> pulumi.Output[None]:
    spec = load_stack("local", ROOT)
    platform = deploy(spec, stack="local")
    app = platform.automation.function_app

    def check(urn: str) -> None:
        # App settings are write-only in Azure's answer: read what the program sent.
        inputs = next(r.inputs for r in mocks.created if r.name == "automation-func")
        settings = {s["name"]: s["value"] for s in inputs["siteConfig"]["appSettings"]}
        assert json.loads(settings["TENANT_MLOPS_PLATFORM_SPEC"])["environment"] == "local", urn
        assert settings["AzureWebJobsStorage__credential"] == "managedidentity", urn
        assert not any("AccountKey=" in str(v) for v in settings.values()), (
            f"{urn}: key in settings"
        )
        deployment = inputs["functionAppConfig"]["deployment"]["storage"]["authentication"]
        assert deployment["type"] == "UserAssignedIdentity", urn
        assert inputs["kind"] == "functionapp,linux", urn

    return app.urn.apply(check)


def test_the_program_reads_its_spec_from_stack_config(mocks: Mocks) -> None:
    """`pulumi up` runs main(): the spec comes from config key tenant-mlops:platform."""
    document = read_yaml(ROOT / "Pulumi.local.yaml")
    pulumi.runtime.set_all_config(
        {
            "tenant-mlops:platform": json.dumps(
                document["config"]["tenant-mlops:platform"], default=str
            )
        }
    )
    try:
        _sync_await(run_pulumi_func(main))
    finally:
        pulumi.runtime.set_all_config({})
    workspaces = [
        r for r in mocks.created if r.typ.endswith(":Workspace") and "machinelearning" in r.typ
    ]
    assert sorted(w.name for w in workspaces) == [
        "pool-shared-ws",
        "tenant-adatum-ws",
        "tenant-contoso-ws",
    ]
