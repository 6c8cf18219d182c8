"""The CrossGuard wrappers, called as the analyzer calls them (real pulumi_policy argument
objects, properties behind its unknown-checking proxy), and values unknown at plan time.

The pack's ``__main__`` is never imported: its PolicyPack constructor starts a server.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import (
    EnforcementLevel,
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from infra.offline import OfflineRun, RecordedResource
from policies.catalogue import RULES
from policies.config import PackConfig
from policies.model_rules import evaluate_model
from policies.offline import evaluate
from policies.pack import build_policies, plain
from tenancy import PlatformSpec
from tests.policies.conftest import TAGS, findings

UNKNOWN = UNKNOWN_STRING_VALUE
WS = "azure-native:machinelearningservices:Workspace"


def _policies() -> dict[str, Any]:
    return {p.name: p for p in build_policies()}


def _validate_resource(
    name: str, props: dict[str, Any], config: dict[str, Any] | None = None
) -> list[str]:
    reported: list[str] = []
    args = ResourceValidationArgs(
        WS,
        unknown_checking_proxy(props),
        "urn:ws",
        "ws",
        None,
        None,
        config,  # type: ignore[arg-type]
    )
    _policies()[name].validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_every_rule_becomes_one_policy_of_the_right_kind() -> None:
    policies = _policies()
    assert list(policies) == [rule.name for rule in RULES]
    for rule in RULES:
        policy = policies[rule.name]
        kind = StackValidationPolicy if rule.is_stack_rule else ResourceValidationPolicy
        assert isinstance(policy, kind)
        assert policy.description == rule.description
        # Without a config file a rule runs at its strictest (its prod level).
        assert policy.enforcement_level == EnforcementLevel(rule.level.prod)
        assert (policy.config_schema is None) == (not rule.settings)


def test_a_resource_policy_reports_through_the_engine() -> None:
    props = {"publicNetworkAccess": "Enabled", "tags": TAGS}
    assert _validate_resource("workspace-public-network-disabled", props) == [
        "publicNetworkAccess is 'Enabled'; the workspace must be reached privately"
    ]
    assert (
        _validate_resource("workspace-public-network-disabled", {"publicNetworkAccess": "Disabled"})
        == []
    )


def test_a_resource_policy_reads_its_config() -> None:
    props = {"tags": TAGS, "encryption": None}
    config = {"tenantClassifications": {"contoso": "confidential"}}
    assert _validate_resource("workspace-customer-managed-key", props, config) == []
    config["cmkClassifications"] = ["confidential"]
    assert len(_validate_resource("workspace-customer-managed-key", props, config)) == 1


def test_an_unknown_value_is_reported_never_passed() -> None:
    """During preview an identity id is unknown: the rule cannot decide, so it says so."""
    props = {
        "identity": {"type": "UserAssigned", "userAssignedIdentities": [UNKNOWN]},
        "primaryUserAssignedIdentity": UNKNOWN,
    }
    [finding] = findings("workspace-user-assigned-identity", WS, props)
    assert finding.unknown_path == "identity.userAssignedIdentities[0]"
    assert finding.message.startswith("cannot check yet: .")
    # Through the pack the engine's own advisory "can't run during preview" diagnostic
    # is raised, naming the property.
    with pytest.raises(UnknownValueError) as raised:
        _validate_resource("workspace-user-assigned-identity", props)
    assert raised.value.props == ["identity", "userAssignedIdentities[0]"]


def test_an_unknown_value_is_advisory_in_the_offline_plan(specs: dict[str, PlatformSpec]) -> None:
    record = RecordedResource(
        "urn:ws", WS, "ws", None, True, {"tags": TAGS, "publicNetworkAccess": UNKNOWN}, {}
    )
    violations = [
        v
        for v in evaluate(OfflineRun([record]), PackConfig.from_spec(specs["prod"]))
        if v.policy == "workspace-public-network-disabled"
    ]
    assert [(v.level, v.message) for v in violations] == [
        (
            "advisory",
            "cannot check yet: .publicNetworkAccess is not known until the resource is applied",
        )
    ]


def test_plain_unwraps_the_engines_proxies_and_keeps_unknowns() -> None:
    props = {"a": [{"b": UNKNOWN}, 1], "c": {"d": "x"}}
    assert plain(unknown_checking_proxy(props)) == props


def test_a_stack_policy_follows_property_dependencies() -> None:
    def resource(type_name: str, name: str, tenant: str) -> PolicyResource:
        props = unknown_checking_proxy({"tags": {**TAGS, "tenant-id": tenant}})
        return PolicyResource(
            f"azure-native:{type_name}", props, f"urn:{name}", name, None, None, None, [], {}
        )  # type: ignore[arg-type]

    identity = resource("managedidentity:UserAssignedIdentity", "id-b", "b")
    workspace = resource("machinelearningservices:Workspace", "ws-a", "a")
    workspace.property_dependencies = {"identity": [identity]}
    reported: list[tuple[str, str | None]] = []
    args = StackValidationArgs([identity, workspace], {})
    _policies()["tenant-isolation"].validate(args, lambda m, urn=None: reported.append((m, urn)))
    assert reported == [
        ("'ws-a' of 'a' references the identity 'id-b' of 'b' (through .identity)", "urn:ws-a")
    ]


def test_rules_are_plain_functions_without_pulumi() -> None:
    """The rule modules import neither Pulumi nor the policy SDK (only the pack's wrappers
    do), so the automation and the tests can use them anywhere."""
    import ast  # noqa: PLC0415
    import inspect  # noqa: PLC0415

    modules = {inspect.getmodule(rule.check or rule.stack_check) for rule in RULES}
    modules.add(inspect.getmodule(evaluate_model))
    for module in modules:
        assert module is not None
        tree = ast.parse(inspect.getsource(module))
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        }
        assert not imported & {"pulumi", "pulumi_policy", "pulumi_azure_native"}, module.__name__
