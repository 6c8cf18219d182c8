"""The automation owns endpoint traffic and deployment models from the first deployment on
(the review's D8 and W9): the program never writes live traffic, a batch default or a
deployment's model that a later `pulumi up` could send again."""

from __future__ import annotations

import copy
from typing import Any

from infra.offline import OfflineRun, RecordedResource, run_offline
from infra.program import deploy
from infra.stamp import AUTOMATION_OWNED
from tenancy import PlatformSpec, contracts, load_stack
from tests.conftest import ROOT
from tests.infra.conftest import of_type


def sent_on_update(
    olds: dict[str, Any], news: dict[str, Any], ignore_changes: tuple[str, ...]
) -> dict[str, Any] | None:
    """What the engine sends for a resource already in the state: the program's inputs with
    every ignored property set back to its old value ("Set inputs back to their old values
    (if any) for any ignored properties", pulumi/pulumi pkg/resource/deploy/
    step_generator.go, processIgnoreChanges), or nothing when that equals the old inputs."""
    processed = copy.deepcopy(news)
    for path in ignore_changes:
        *parents, leaf = path.split(".")
        old_node: Any = olds
        new_node: Any = processed
        for key in parents:
            old_node = old_node.get(key, {}) if isinstance(old_node, dict) else {}
            new_node = new_node.setdefault(key, {})
        if isinstance(old_node, dict) and leaf in old_node:
            new_node[leaf] = copy.deepcopy(old_node[leaf])
        else:
            new_node.pop(leaf, None)
    return None if processed == olds else processed


def _plan(spec: PlatformSpec) -> dict[str, RecordedResource]:
    run = run_offline(lambda: deploy(spec, stack="dev"), stack="dev")
    return {r.urn: r for r in run.custom_resources()}


def test_a_tag_change_after_a_rollout_sends_no_traffic_default_or_model(
    planned: dict[str, OfflineRun],
) -> None:
    """First `pulumi up`, then the automation rolls out (traffic and blue's model change in
    Azure, not in the state), then a platform engineer changes contoso's cost center: the
    endpoints' updates carry the new tags and no traffic, no mirror, no batch default; the
    deployments are not updated at all."""
    spec = load_stack("dev", ROOT)
    first = {r.urn: r for r in planned["dev"].custom_resources()}
    tenants = [
        t.model_copy(update={"cost_center": "cc-9999"}) if t.id == "contoso" else t
        for t in spec.tenants
    ]
    second = _plan(spec.model_copy(update={"tenants": tenants}))
    by_name = {r.name: urn for urn, r in second.items()}

    def sent(name: str) -> dict[str, Any] | None:
        record = second[by_name[name]]
        return sent_on_update(first[record.urn].inputs, record.inputs, record.ignore_changes)

    online = sent("tenant-contoso-online")
    assert online is not None and online["tags"][contracts.TAG_COST_CENTER] == "cc-9999"
    assert "traffic" not in online["properties"]
    assert "mirrorTraffic" not in online["properties"]
    batch = sent("tenant-contoso-batch")
    assert batch is not None and "defaults" not in batch["properties"]
    assert sent(f"tenant-contoso-online-{contracts.FIRST_DEPLOYMENT}") is None
    assert sent(f"tenant-contoso-batch-{contracts.BATCH_DEFAULT_DEPLOYMENT}") is None


def test_first_deployments_are_created_once_and_then_left_to_the_automation(
    planned: dict[str, OfflineRun],
) -> None:
    for stack, run in planned.items():
        for kind in ("OnlineDeployment", "BatchDeployment"):
            for deployment in of_type(run, f"machinelearningservices:{kind}"):
                assert deployment.ignore_changes == tuple(AUTOMATION_OWNED), (stack, deployment.urn)
                assert set(deployment.inputs) - {
                    "resourceGroupName",
                    "workspaceName",
                    "endpointName",
                    "deploymentName",
                    "location",
                } <= set(AUTOMATION_OWNED), deployment.urn


def test_no_endpoint_names_a_deployment_and_the_batch_default_follows_its_deployment(
    planned: dict[str, OfflineRun],
) -> None:
    """D8: traffic and batch defaults named deployments created after their endpoint."""
    for run in planned.values():
        for endpoint in of_type(run, "machinelearningservices:OnlineEndpoint"):
            assert "traffic" not in endpoint.inputs["properties"], endpoint.urn
            assert "mirrorTraffic" not in endpoint.inputs["properties"], endpoint.urn
        by_urn = {r.urn: r for r in run.records}
        for endpoint in of_type(run, "machinelearningservices:BatchEndpoint"):
            assert "defaults" not in endpoint.inputs["properties"], endpoint.urn
        setters = [r for r in run.records if r.inputs.get("kind") == contracts.KIND_BATCH_DEFAULT]
        assert setters
        for setter in setters:
            assert setter.inputs["deploymentName"] == contracts.BATCH_DEFAULT_DEPLOYMENT
            [deployment] = [
                by_urn[u]
                for u in setter.dependencies
                if by_urn[u].type.endswith(":BatchDeployment")
            ]
            assert deployment.inputs["deploymentName"] == contracts.BATCH_DEFAULT_DEPLOYMENT


def test_batch_deployments_run_the_batch_entry_script(planned: dict[str, OfflineRun]) -> None:
    """W6: a batch deployment calls run(mini_batch), which batch_score.py defines."""
    for run in planned.values():
        for deployment in of_type(run, "machinelearningservices:BatchDeployment"):
            script = deployment.inputs["properties"]["codeConfiguration"]["scoringScript"]
            assert script == "batch_score.py" == contracts.BATCH_SCORING_SCRIPT
            assert (ROOT / "ml" / "scoring" / script).is_file()
        for deployment in of_type(run, "machinelearningservices:OnlineDeployment"):
            # Under the inference server the code asset names score.py; the scoring
            # container holds it (tests/infra/test_serving_runtime.py).
            code = deployment.inputs["properties"].get("codeConfiguration")
            assert code is None or code["scoringScript"] == "score.py"


def test_workspaces_use_identity_datastores_by_the_enums_value(
    planned: dict[str, OfflineRun],
) -> None:
    """C3: `Identity`, the enum value Azure returns (a lowercase value diffs forever)."""
    for run in planned.values():
        for workspace in of_type(run, "machinelearningservices:Workspace"):
            assert workspace.inputs["systemDatastoresAuthMode"] == "Identity", workspace.urn
