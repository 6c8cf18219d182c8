"""Offline runs (the plan's) are independent of whatever ran before them in the process."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import resources

from infra.offline import run_offline


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
