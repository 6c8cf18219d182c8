"""The serving runtime, a per-tier choice: ``lean`` deployments run the scoring container
(score.py inside it, no code asset), an environment each installation's registry builds from
the checkout's context once per version; ``azureml-inference-server`` deployments run
Azure ML's host with the registry's scoring environment and code asset."""

from __future__ import annotations

from infra.offline import OfflineRun, run_offline
from infra.program import deploy
from serving.image import ENVIRONMENT_NAME, environment_version
from tenancy import PlatformSpec, contracts, naming
from tests.conftest import ROOT
from tests.infra.conftest import of_type, stamp_of


def _deployments(run: OfflineRun) -> dict[str, dict[str, object]]:
    return {
        str(stamp_of(run, d)): d.inputs["properties"]
        for d in of_type(run, "machinelearningservices:OnlineDeployment")
    }


def test_lean_deployments_run_the_scoring_container_built_in_the_registry(
    planned: dict[str, OfflineRun], specs: dict[str, PlatformSpec]
) -> None:
    version = environment_version(ROOT)
    for stack in ("dev", "staging", "prod"):
        run, spec = planned[stack], specs[stack]
        registry = naming.ml_registry(spec.prefix, spec.environment, spec.installation)
        [published] = [
            r
            for r in run.custom_resources()
            if r.inputs.get("kind") == contracts.KIND_SERVING_ENVIRONMENT
        ]
        assert published.inputs["version"] == version, stack
        assert published.inputs["contextRoot"] == str(ROOT)
        image = (
            f"azureml://registries/{registry}/environments/{ENVIRONMENT_NAME}/versions/{version}"
        )
        deployments = _deployments(run)
        assert deployments, stack
        for stamp, properties in deployments.items():
            assert properties["environmentId"] == image, (stack, stamp)
            assert "codeConfiguration" not in properties, (stack, stamp)  # score.py is inside


def test_a_tier_may_keep_azure_mls_inference_server(specs: dict[str, PlatformSpec]) -> None:
    spec = specs["dev"]
    server = {"serving_runtime": "azureml-inference-server"}
    pooled = spec.tiers.pooled.model_copy(update=server)
    mixed = spec.model_copy(update={"tiers": spec.tiers.model_copy(update={"pooled": pooled})})
    run = run_offline(lambda: deploy(mixed, stack="dev"), stack="dev")
    pools = {t.stamp_key for t in mixed.tenants if t.tier == "pooled"}
    for stamp, properties in _deployments(run).items():
        environment = str(properties["environmentId"])
        if stamp in pools:
            assert environment.endswith(
                f"/environments/{spec.serving.environment.replace(':', '/versions/')}"
            )
            code = properties["codeConfiguration"]
            assert code["scoringScript"] == contracts.ONLINE_SCORING_SCRIPT  # type: ignore[index]
        else:
            assert f"/environments/{ENVIRONMENT_NAME}/versions/" in environment, stamp
    # Only the lean tier needs the container: with both on the inference server, none is built.
    server = {"serving_runtime": "azureml-inference-server"}
    tiers = mixed.tiers.model_copy(
        update={"dedicated": mixed.tiers.dedicated.model_copy(update=server)}
    )
    both = mixed.model_copy(update={"tiers": tiers})
    plain = run_offline(lambda: deploy(both, stack="dev"), stack="dev")
    assert not [r for r in plain.custom_resources()
                if r.inputs.get("kind") == contracts.KIND_SERVING_ENVIRONMENT]  # fmt: skip
