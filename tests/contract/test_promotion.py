"""Promotion between two Azure environments (staging -> prod) through the Azure adapter's
real SDK calls over the stateful fake of Azure: the source workspace's champion is shared
into prod's Azure ML registry, prod's workspace registers its own version from the
registry's files, and prod's automation, on that registration's event, gates the version
and rolls it out under prod's approval rules. The same step on the embedded platform is
tests/local/test_platform.py::test_local_promotes_to_local_prod_through_both_patterns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from adapters.azure_registry import AzureMlRegistry
from automation.registry_events import RegistrationHandler, RegistryEvent
from automation.rollout import Command, Phase
from automation.runner import RolloutRunner
from automation.store import MemoryStore
from ml.lifecycle import train_stack
from mlops.promote_azure import AzurePromotion, promote_code, promote_through_registry, refusals
from tenancy import PlatformSpec, contracts, naming, parse_platform_spec
from tenancy.errors import InvalidInputError
from tests.adapters.fake_arm import FakeCredential
from tests.contract.harness import SUBSCRIPTION, AzureHarness, Clock
from tests.tenancy.conftest import stack_document

TENANT = "contoso"


def _document(stack: str, tenants: tuple[str, ...] = (TENANT,)) -> dict[str, Any]:
    """The stack's own document with fewer tenants (and no pools), rollouts in one step."""
    document = stack_document(stack)
    document["tenants"] = [t for t in document["tenants"] if t["id"] in tenants]
    document["pools"] = []
    document["rollout"] = {
        **document["rollout"],
        "strategy": "blue_green",
        "steps": [100],
        "analysis": {"interval_seconds": 60, "min_requests": 10, "failure_threshold": 2},
        "drain_delay_seconds": 60,
    }
    document["rollout"].pop("mirror_percent", None)
    return document


@dataclass
class Environments:
    staging: AzureHarness
    prod: AzureHarness
    registry: AzureMlRegistry
    champion: tuple[str, str]  # staging's champion of the tenant's model (name, version)

    def promotion(self, version: str | None = None, **changes: Any) -> AzurePromotion:
        name, champion = self.champion
        promotion = AzurePromotion(
            TENANT,
            name,
            version or champion,
            "staging",
            "prod",
            self.staging.port,  # type: ignore[arg-type]
            self.prod.port,  # type: ignore[arg-type]
            self.registry,
        )
        return replace(promotion, **changes)


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environments]:
    staging_spec = parse_platform_spec(_document("staging"))
    prod_spec = parse_platform_spec(_document("prod"))
    data_dir = tmp_path_factory.mktemp("promotion")
    registered = {r.tenant: r for r in train_stack(staging_spec, data_dir / "staging")}
    clock = Clock()
    staging = AzureHarness(staging_spec, data_dir / "staging", registered, clock)
    prod = AzureHarness(prod_spec, data_dir / "prod", {}, clock, fake=staging.fake)
    registry_name = naming.ml_registry(
        prod_spec.prefix, prod_spec.environment, prod_spec.installation
    )
    staging.fake.add_registry(
        naming.resource_group(prod_spec.prefix, prod_spec.environment, naming.PLATFORM_SCOPE),
        registry_name,
    )
    registry = AzureMlRegistry(
        registry_name,
        FakeCredential(),  # type: ignore[arg-type]
        SUBSCRIPTION,
        {"transport": staging.fake},
    )
    # What staging's rollout left: a version of the tenant's, crowned champion there.
    event = staging.publish(TENANT)
    staging.port.crown(TENANT, event.model, event.version)  # type: ignore[attr-defined]
    yield Environments(staging, prod, registry, (event.model, event.version))
    prod.close()
    staging.close()


def _registered_event(prod: AzureHarness, name: str, version: str) -> RegistryEvent:
    """Event Grid's ModelRegistered for the version prod's workspace registered."""
    workspace = prod.workspaces[prod.spec.tenant(TENANT).stamp_key]
    model = prod.fake.resource(f"{workspace}/models/{name}/versions/{version}")
    assert model is not None, f"{name}/{version} is not registered in prod"
    tags = model["properties"]["tags"]
    return RegistryEvent(f"eg-prod-{name}-{version}", "eventgrid", name, version, tags)


def _drive(prod: AzureHarness, runner: RolloutRunner, ref: str, until: set[Phase]) -> Phase:
    for _ in range(12):
        prod.settle()
        prod.clock.skip(30)
        endpoint = prod.port.endpoint(TENANT)
        if endpoint.serving and prod.port.serves_tenant(TENANT, endpoint.live):
            prod.traffic(TENANT, 30)
        prod.clock.skip(31)
        runner.tick(TENANT, ref)
        phase = runner.get(TENANT, ref).phase
        if phase in until:
            return phase
    return runner.get(TENANT, ref).phase


def test_a_champion_crosses_to_prod_through_its_registry(environments: Environments) -> None:
    env = environments
    name, version = env.champion
    promoted = promote_through_registry(env.promotion())
    assert promoted.passed, promoted.gate
    assert promoted.source == f"staging:{name}/{version}"
    assert promoted.target == f"prod:{name}/1"  # prod's own numbering: its first version

    # Azure ML copied the staging workspace's version into prod's registry, by its asset id.
    staging_workspace = env.staging.workspaces[env.staging.spec.tenant(TENANT).stamp_key]
    guid = env.staging.fake.arm[staging_workspace.lower()]["properties"]["workspaceId"]
    [imported] = [c for c in env.staging.fake.calls if c.path.endswith("/import")]
    assert imported.body["properties"] == {
        "referenceType": "Id",
        "destinationName": f"{TENANT}--{name}",
        "destinationVersion": version,
        "sourceAssetId": f"azureml://locations/westeurope/workspaces/{guid}/models/{name}"
        f"/versions/{version}",
    }
    shared = env.staging.fake.registry_models[(env.registry.name, f"{TENANT}--{name}", version)]
    assert shared["properties"]["jobName"].startswith(f"job-{TENANT}-")  # lineage kept

    # Prod's version: the registry's files, the source's metrics and baseline, its origin.
    tags = _registered_event(env.prod, name, "1").tags
    assert tags[contracts.MODEL_TAG_PROMOTED_FROM] == f"staging:{name}/{version}"
    assert tags[contracts.MODEL_TAG_REGISTRY_ASSET] == (
        f"azureml://registries/{env.registry.name}/models/{TENANT}--{name}/versions/{version}"
    )
    assert contracts.MODEL_TAG_ALIAS not in tags  # staging's champion is not prod's
    source_run = env.staging.fake.runs[shared["properties"]["jobName"]]
    carried = json.loads(tags[contracts.MODEL_TAG_SOURCE_METRICS])
    assert carried == {k: round(v, 6) for k, v in source_run.items()}
    baseline = tags[contracts.MODEL_TAG_BASELINE]
    assert baseline.startswith("azureml://datastores/workspaceblobstore/paths/promoted/")
    facts = env.prod.port.model_facts(TENANT, name, "1")
    assert facts.metrics == carried  # the gate reads the source run's metrics
    assert facts.computed_digest == tags[contracts.MODEL_TAG_DIGEST]  # the files came whole

    # Prod's automation takes it from the registration's event: gate, then prod's approvals.
    store = MemoryStore()
    runner = RolloutRunner(env.prod.spec, store, env.prod.port, env.prod.clock.now)
    handler = RegistrationHandler(env.prod.spec, store, env.prod.port, runner, env.prod.clock.now)
    event = _registered_event(env.prod, name, "1")
    assert handler.handle(event).status == "started"
    [received] = [
        r.data
        for r in store.query(contracts.TABLE_AUDIT, TENANT)
        if r.data.get("event") == "promotion_received"
    ]
    assert received["from"] == f"staging:{name}/{version}" and received["to"] == f"{name}/1"
    assert received["gate"] == "passed"
    assert _drive(env.prod, runner, event.ref, {Phase.AWAITING_APPROVAL}) == (
        Phase.AWAITING_APPROVAL
    )
    assert env.prod.champion(TENANT, name) is None  # nothing is promoted without an approver
    runner.command(TENANT, event.ref, Command("approve", "lee", "project_lead"))
    for _ in range(4):
        if runner.get(TENANT, event.ref).done:
            break
        env.prod.clock.skip(61)
        runner.tick(TENANT, event.ref)
    assert runner.get(TENANT, event.ref).phase == Phase.PROMOTED
    assert env.prod.champion(TENANT, name) == "1"
    assert env.prod.port.live_model(TENANT, env.prod.port.endpoint(TENANT).live) == (name, "1")
    status, _ = env.prod.answer(TENANT)
    assert status == 200

    # Again: nothing is shared or registered twice.
    again = promote_through_registry(env.promotion())
    assert again.target == promoted.target
    assert len([c for c in env.staging.fake.calls if c.path.endswith("/import")]) == 1


def test_only_the_sources_champion_moves_on(environments: Environments) -> None:
    env = environments
    name, champion = env.champion
    newer = env.staging.publish(TENANT)  # registered in staging, never rolled out there
    with pytest.raises(InvalidInputError) as refused:
        promote_through_registry(env.promotion(newer.version))
    assert f"{name}/{newer.version} is not promoted in staging" in refused.value.message
    assert f"its champion there is {name}/{champion}" in refused.value.message
    shared = {(n, v) for (_, n, v) in env.staging.fake.registry_models}
    assert (f"{TENANT}--{name}", newer.version) not in shared


def test_steps_that_skip_or_miss_are_refused_before_anything_is_written(
    environments: Environments,
) -> None:
    env = environments
    dev = parse_platform_spec(_document("dev"))
    skipping = env.promotion(source_stack="dev", source=_SpecOnly(dev))
    assert refusals(skipping) == [
        "dev promotes to staging, not prod: promote through staging first"
    ]

    prod_without = parse_platform_spec(_document("prod", tenants=("adatum",)))
    missing = env.promotion(target=_SpecOnly(prod_without))
    assert refusals(missing) == [f"tenant {TENANT} is not in prod"]

    document = _document("prod")
    document["tenants"][0]["promotion"] = "deploy_code"
    by_code = env.promotion(target=_SpecOnly(parse_platform_spec(document)))
    [problem] = refusals(by_code)
    assert problem == (
        f"tenant {TENANT} is promoted by deploy_code in prod: "
        "its training code moves, not its model"
    )
    calls = len(env.staging.fake.calls)
    with pytest.raises(InvalidInputError):
        promote_through_registry(by_code)
    assert len(env.staging.fake.calls) == calls  # refused before Azure was asked anything


class _SpecOnly:
    """An environment known by its spec alone: a refusal must not need more."""

    def __init__(self, spec: PlatformSpec) -> None:
        self.spec = spec

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a refused promotion reached Azure ({name})")


def test_a_code_promotion_retrains_in_prod_held_to_stagings_champion(
    environments: Environments,
) -> None:
    """deploy_code on Azure: prod's training job gets staging's champion and its metrics as
    the tags ``python -m ml.retrain`` registers the new version with, so Event Grid's event
    brings them to the gate that holds it to those metrics (PROMOTION_REGRESSION)."""
    env = environments
    name, version = env.champion
    document = _document("prod")
    document["tenants"][0]["promotion"] = "deploy_code"
    prod_by_code = parse_platform_spec(document)
    done = promote_code(
        TENANT, name, version, ("staging", env.staging.port), ("prod", prod_by_code, env.prod.port)
    )  # type: ignore[arg-type]
    assert done.to_dict()["gate"] == "pending" and not done.passed
    assert done.source == f"staging:{name}/{version}"
    [job] = [c for c in env.staging.fake.calls if c.method == "PUT" and "/jobs/" in c.path]
    prod_workspace = env.prod.workspaces[env.prod.spec.tenant(TENANT).stamp_key]
    assert job.path.lower().startswith(prod_workspace.lower())  # trained in prod, on its data
    sent = json.loads(job.body["properties"]["environmentVariables"][contracts.SETTING_MODEL_TAGS])
    assert sent[contracts.MODEL_TAG_PROMOTED_FROM] == f"staging:{name}/{version}"
    assert sent[contracts.MODEL_TAG_PROMOTION] == "deploy_code"
    job_run = env.staging.fake.runs[
        env.staging.fake.resource(
            f"{env.staging.workspaces[env.staging.spec.tenant(TENANT).stamp_key]}"
            f"/models/{name}/versions/{version}"
        )["properties"]["jobName"]  # type: ignore[index]
    ]
    assert json.loads(sent[contracts.MODEL_TAG_SOURCE_METRICS]) == {
        k: round(v, 6) for k, v in job_run.items()
    }
    assert (
        job.body["properties"]["tags"][contracts.MODEL_TAG_PROMOTED_FROM]
        == sent[contracts.MODEL_TAG_PROMOTED_FROM]
    )
    # A version that is not staging's champion is refused before any job is submitted.
    newer = env.staging.publish(TENANT)
    jobs = len([c for c in env.staging.fake.calls if "/jobs/" in c.path])
    with pytest.raises(InvalidInputError, match="is not promoted in staging"):
        promote_code(
            TENANT, name, newer.version, ("staging", env.staging.port),
            ("prod", prod_by_code, env.prod.port),
        )  # type: ignore[arg-type]  # fmt: skip
    assert len([c for c in env.staging.fake.calls if "/jobs/" in c.path]) == jobs
