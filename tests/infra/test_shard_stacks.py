"""An environment with ``placement.shard_stacks``: the shared stack holds the platform and
exports its refs; each target's stamps are a shard stack of their own over a
StackReference, planned in a process of its own. Together they make what one stack
would, and no shard holds another's stamps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.offline import ORGANIZATION, run_offline
from infra.platform_refs import OUTPUT
from infra.program import deploy, deploy_shard
from mlops.plan import build_plan, render_text
from tenancy import PlatformSpec, load_stack, parse_platform_spec
from tenancy.errors import ConfigError
from tenancy.load import PROJECT
from tenancy.placement import read_record, write_record, write_shard_stacks
from tests.tenancy.conftest import stack_document

SUB_B = "11111111-2222-4333-8444-555555555555"
TARGETS = [
    {"id": "weu-a", "region": "westeurope"},
    {"id": "neu-b", "subscription_id": SUB_B, "region": "northeurope"},
]


def _document(*, sharded: bool) -> dict[str, Any]:
    document = stack_document("dev")
    document["placement"] = {
        "targets": TARGETS,
        "pins": {"tenant-contoso": "neu-b"},
        "shard_stacks": sharded,
    }
    document["gateway"]["sku"] = "Premium"  # regional gateways (infra.front_door)
    return document


#: Each stack leaves its own expected-state document (the shard's under its own name).
EXPECTED_STATE = ("pulumi-python:dynamic:Resource", "expected-state-upload")


def _kinds(resources: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["type"], r["name"]) for r in resources} - {EXPECTED_STATE}


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("sharded")
    spec = parse_platform_spec(_document(sharded=True))
    return build_plan(spec, "dev", root=root), root


def test_the_shards_together_make_what_one_stack_makes(sharded: Any, tmp_path: Path) -> None:
    plan, _ = sharded
    one = build_plan(
        parse_platform_spec(_document(sharded=False)), "dev", root=tmp_path, policies=None
    )
    assert [s.stack for s in plan.shards] == ["dev.weu-a", "dev.neu-b"]
    together = _kinds(plan.resources)
    for shard in plan.shards:
        assert not _kinds(shard.resources) & together, shard.stack  # nothing made twice
        together |= _kinds(shard.resources)
    assert together == _kinds(one.resources)
    assert not plan.has_mandatory_violation, [
        (s.stack, v.policy, v.message) for s in [plan, *plan.shards] for v in s.violations
    ]


def test_the_shared_stack_holds_no_stamp_and_each_shard_only_its_targets(sharded: Any) -> None:
    plan, _ = sharded
    assert {r["stamp"] for r in plan.resources} == {"platform"}
    stamps = {
        shard.stack: {
            r["stamp"]
            for r in shard.resources
            if r["stamp"] != "platform" and not r["type"].startswith("pulumi:providers:")
        }
        for shard in plan.shards
    }
    assert stamps == {
        "dev.weu-a": {"tenant-adatum", "pool-shared"},
        "dev.neu-b": {"tenant-contoso"},
    }
    neu = plan.shards[1]
    located = {r["inputs"]["location"] for r in neu.resources if "location" in r["inputs"]}
    assert "westeurope" not in located
    [provider] = [r for r in neu.resources if r["type"] == "pulumi:providers:azure-native"]
    assert provider["inputs"]["subscriptionId"] == SUB_B


def test_a_shard_reads_the_shared_platform_through_its_stack_reference(
    sharded: Any, tmp_path: Path
) -> None:
    _, root = sharded
    spec = parse_platform_spec(_document(sharded=True))
    shared = run_offline(lambda: deploy(spec, stack="dev", project_root=root), stack="dev")
    exported = shared.outputs[OUTPUT]
    references = {f"{ORGANIZATION}/{PROJECT}/dev": shared.outputs}
    shard = run_offline(
        lambda: deploy_shard(spec, environment="dev", target="weu-a", project_root=root),
        stack="dev.weu-a",
        references=references,
    )
    resources = shard.custom_resources()
    diagnostics = [r for r in resources if r.type == "azure-native:monitor:DiagnosticSetting"]
    assert diagnostics and {d.inputs["workspaceId"] for d in diagnostics} == {
        exported["log_analytics_id"]
    }
    routes = [r for r in resources if r.type == "azure-native:apimanagement:Product"]
    assert routes and {r.inputs["serviceName"] for r in routes} == {
        exported["gateway"]["service_name"]
    }
    links = [r for r in resources if r.type == "azure-native:apimanagement:ProductApiLink"]
    assert {link.inputs["apiId"] for link in links} == {
        exported["gateway"]["scoring_api_id"],
        exported["gateway"]["genai_api_id"],
    }
    events = [
        r for r in resources if r.type == "azure-native:eventgrid:SystemTopicEventSubscription"
    ]
    assert events and all(
        e.inputs["destination"]["resourceId"].startswith(exported["function_app_id"])
        for e in events
    )
    # Its expected state is a document of its own beside the shared stack's.
    [upload] = [r for r in resources if r.name == "expected-state-upload"]
    assert upload.inputs["blobName"] == "expected-state.weu-a.json"


def test_a_shard_before_its_shared_stack_or_of_no_target_is_refused(tmp_path: Path) -> None:
    spec = parse_platform_spec(_document(sharded=True))
    with pytest.raises(Exception, match="before its shard stacks"):
        run_offline(
            lambda: deploy_shard(spec, environment="dev", target="weu-a", project_root=tmp_path),
            stack="dev.weu-a",
        )
    with pytest.raises(ConfigError, match="no target 'nowhere'"):
        deploy_shard(spec, environment="dev", target="nowhere", project_root=tmp_path)
    one = parse_platform_spec(_document(sharded=False))
    with pytest.raises(ConfigError, match="there are no shards"):
        deploy_shard(one, environment="dev", target="weu-a", project_root=tmp_path)


def test_shard_stack_files_name_their_environment_and_load_as_the_shard_holds_it(
    sharded: Any, tmp_path: Path
) -> None:
    plan, _ = sharded
    document = {"config": {"tenant-mlops:platform": _document(sharded=True)}}
    (tmp_path / "Pulumi.yaml").write_text("name: tenant-mlops\nruntime: python\n")
    (tmp_path / "Pulumi.dev.yaml").write_text(json.dumps(document))
    write_record(tmp_path, "dev", plan.placement)
    written = write_shard_stacks(tmp_path, "dev", plan.placement)
    assert [p.name for p in written] == ["Pulumi.dev.weu-a.yaml", "Pulumi.dev.neu-b.yaml"]
    assert read_record(tmp_path, "dev").stamps["tenant-contoso"] == "neu-b"
    shard: PlatformSpec = load_stack("dev.neu-b", tmp_path)
    assert [t.id for t in shard.tenants] == ["contoso"] and shard.pools == []
    text = render_text(plan, shard)
    assert "dev.neu-b" in text and "Stacks (the shared stack first" in text
    totals = plan.to_dict()["total"]
    assert totals["stacks"] == 3
    assert totals["resources"] == len(plan.resources) + sum(len(s.resources) for s in plan.shards)
