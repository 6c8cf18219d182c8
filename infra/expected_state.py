"""The expected state: what this `pulumi up` sets on each resource the policy rules govern,
written where the Function App's audit reads it (``policies.plan_drift`` says what it holds
and how drift is judged).

The program's inputs are caught as they are registered, by a stack transformation, in the
shape the engine receives them (wire names, nested input types as maps): the shape the
rules read and the audit's live inventory is translated to. Their ids and computed values
are known once the resources exist, so the document is built then, and written last, by
the deployer (who writes the Functions package the same way).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc

from infra.common import DeployerWrite, grant_deployer_write
from infra.deploy_time import ExpectedStateInputs, ExpectedStateUpload
from policies.config import PackConfig
from policies.live import ARM_TYPE_OF
from policies.plan_drift import PlannedResource, expected_state
from tenancy import contracts
from tenancy.spec import PlatformSpec


@dataclass
class _Caught:
    type: str
    resource: pulumi.Resource
    inputs: pulumi.Output[dict[str, Any]]
    ignored: tuple[str, ...]

    def planned(self, resolved: list[Any]) -> PlannedResource:
        resource_id, inputs = resolved
        return PlannedResource(str(resource_id), self.type, inputs, self.ignored)


@dataclass
class PlanCapture:
    """Catches every governed resource the program registers after :meth:`install`."""

    caught: list[_Caught] = field(default_factory=list)

    def install(self) -> None:
        pulumi.runtime.register_stack_transformation(self._catch)

    def _catch(
        self, args: pulumi.ResourceTransformationArgs
    ) -> pulumi.ResourceTransformationResult | None:
        if args.type_ in ARM_TYPE_OF:
            ignored = tuple(args.opts.ignore_changes or ()) if args.opts else ()
            self.caught.append(
                _Caught(args.type_, args.resource, _wire_inputs(args.resource, args.props), ignored)
            )
        return None  # the resource is registered as the program made it

    def planned(self) -> pulumi.Output[list[PlannedResource]]:
        """Every caught resource with its id and resolved inputs."""
        entries = [
            pulumi.Output.all(caught.resource.id, caught.inputs).apply(caught.planned)
            for caught in self.caught
            if isinstance(caught.resource, pulumi.CustomResource)
        ]
        return pulumi.Output.all(*entries).apply(list)


def _wire_inputs(resource: pulumi.Resource, props: pulumi.Inputs) -> pulumi.Output[dict[str, Any]]:
    """``props`` as the engine receives them: the SDK's own serialisation, with the
    resource's input type naming each property (``public_network_access`` becomes
    ``publicNetworkAccess``, an ``...Args`` object a map)."""
    cls = type(resource)
    input_type = getattr(sys.modules[cls.__module__], f"{cls.__name__}Args", None)

    async def serialise() -> dict[str, Any]:
        struct = await rpc.serialize_properties(props, {}, typ=input_type)
        return _without_secrets(rpc.deserialize_properties(struct, keep_unknowns=True))

    resolved = asyncio.ensure_future(serialise())

    async def known() -> bool:
        return not rpc.contains_unknowns(await resolved)

    async def secret() -> bool:
        return False  # secret inputs are dropped: the document is never secret

    return pulumi.Output(set(), resolved, asyncio.ensure_future(known()), secret())


def _without_secrets(value: Any) -> Any:
    """``value`` with every secret input left out: no rule reads one, and the document must
    not carry it."""
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if not rpc.is_rpc_secret(v)}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value if not rpc.is_rpc_secret(v)]
    return value


@dataclass
class ExpectedStateArgs:
    spec: PlatformSpec
    capture: PlanCapture
    deployer_object_id: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    storage_account_name: pulumi.Input[str]  # the platform's account
    blob_endpoint: pulumi.Input[str]
    # The platform account's id, where the deployer is granted the right to write; None in
    # a shard stack, whose deployer the shared stack granted it already.
    storage_id: pulumi.Input[str] | None
    shard: str | None = None  # a shard stack's target (its own document)


class ExpectedState(pulumi.ComponentResource):
    """The deployer's right to write the platform-state container, then the document (built
    after that grant, so the grant is in it too)."""

    def __init__(
        self, name: str, args: ExpectedStateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:audit:ExpectedState", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        can_write = self._create_deployer_grant()
        document = self._document()
        self.upload = ExpectedStateUpload(
            f"{name}-upload",
            ExpectedStateInputs(
                account_name=args.storage_account_name,
                blob_endpoint=args.blob_endpoint,
                document=document,
                digest=document.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()),
                uploader_object_id=args.deployer_object_id,
                blob_name=contracts.expected_state_blob(args.shard),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[can_write] if can_write else []),
        )
        self.register_outputs({"url": self.upload.url, "digest": self.upload.digest})

    def _create_deployer_grant(self) -> pulumi.CustomResource | None:
        spec = self._args.spec
        if self._args.storage_id is None:
            return None
        write = DeployerWrite(
            self._args.storage_id,
            contracts.CONTAINER_PLATFORM_STATE,
            self._args.deployer_object_id,
            self._args.subscription_id,
            f"{spec.prefix}/{spec.environment.value}/platform/state",
            "the deployer writes the expected state",
        )
        return grant_deployer_write(f"{self._name}-deployer", write, parent=self)

    def _document(self) -> pulumi.Output[str]:
        config = PackConfig.from_spec(self._args.spec)
        return self._args.capture.planned().apply(
            lambda planned: json.dumps(expected_state(planned, config), sort_keys=True)
        )
