"""Offline runs (the plan's) are independent of whatever ran before them in the process."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from pulumi_azure_native import machinelearningservices, resources

from infra import offline
from infra.offline import RecordingMonitor, run_offline


def _group() -> None:
    resources.ResourceGroup("rg", resource_group_name="rg-original", location="westeurope")


def _group_renamed_by_a_stack_transformation() -> None:
    def rename(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult:
        return pulumi.ResourceTransformationResult(
            {**args.props, "resource_group_name": "rg-sabotaged"}, args.opts
        )

    pulumi.runtime.register_stack_transformation(rename)
    _group()


def test_a_stack_transformation_of_an_earlier_run_does_not_reach_the_next() -> None:
    sabotaged = run_offline(_group_renamed_by_a_stack_transformation, stack="one")
    assert sabotaged.custom_resources()[0].inputs["resourceGroupName"] == "rg-sabotaged"
    clean = run_offline(_group, stack="two")
    (group,) = clean.custom_resources()
    assert group.inputs["resourceGroupName"] == "rg-original", group.urn
    assert group.urn.startswith("urn:pulumi:two::"), group.urn


def test_an_offline_run_registers_resources_without_their_aliases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """azure-native declares an alias per older type token; a plan has no state to match."""
    captured: list[object] = []

    class Capturing(RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
            captured.append(request)
            return super().RegisterResource(request)

    monkeypatch.setattr(offline, "RecordingMonitor", Capturing)
    run = run_offline(_workspace, stack="aliases")
    (workspace,) = run.custom_resources()
    assert workspace.inputs["workspaceName"] == "ws", workspace.urn
    registered = [r for r in captured if getattr(r, "type", "").endswith(":Workspace")]
    assert registered and not registered[0].aliasSpecs and not registered[0].aliases


def _workspace() -> None:
    machinelearningservices.Workspace(
        "ws", workspace_name="ws", resource_group_name="rg", location="westeurope"
    )


def test_a_run_after_asyncio_run_left_no_event_loop_still_plans() -> None:
    """``asyncio.run`` leaves the main thread without a current loop (a test before this
    one on the same worker, a CLI); the offline run makes its own."""
    import asyncio  # noqa: PLC0415

    asyncio.run(asyncio.sleep(0))

    def program() -> None:
        resources.ResourceGroup("rg", resource_group_name="rg-after-asyncio-run")

    run = run_offline(program, stack="loopless")
    assert [r.name for r in run.custom_resources()] == ["rg"]
