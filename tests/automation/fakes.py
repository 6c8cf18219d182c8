"""A platform for the automation's tests: deployments, traffic and metrics in memory, with
failures to inject. It implements the same PlatformPort the Azure and local adapters do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from automation.port import DeploymentStatus, Endpoint
from automation.rollout import InvariantViolation, Stats
from policies.model_rules import ModelFacts
from tenancy.spec import PlatformSpec

DIGEST = "sha256:" + "ab" * 32


def good_facts(
    name: str, version: str, tenant: str = "contoso", spec: PlatformSpec | None = None
) -> ModelFacts:
    """Facts of a version that passes every model rule of the example stacks for
    ``tenant`` (of the strategy ``spec`` gives it: tenant-specific without one)."""
    strategy = spec.tenant(tenant).model_strategy if spec else "tenant_specific"
    lineage: dict[str, str] = {}
    if strategy != "tenant_specific":
        consenting = [t.id for t in spec.consenting_tenants] if spec else []
        own = [tenant] if strategy == "tuned_shared" else []
        lineage = {
            "contributing_tenants": ",".join(sorted({*consenting, *own})),
            "identifying_columns_removed": "true",
        }
        if strategy == "tuned_shared":
            lineage["base_model"] = "shared-classical/1"
    tags = {
        **lineage,
        "tenant": "shared" if strategy == "shared" else tenant,
        "training_run": "r1",
        "data_version": "v1",
        "owner": "ds",
        "intended_use": "scoring",
        "strategy": strategy,
        "artifact_digest": DIGEST,
        "baseline_dataset": "file:///b.npz",
    }
    return ModelFacts(
        name=name, version=version, tags=tags, metrics={"accuracy": 0.95},
        flavors=("onnx",), artifact_format="onnx", packages=("onnxruntime",),
        computed_digest=DIGEST, size_bytes=2048,
    )  # fmt: skip


@dataclass
class FakeDeployment:
    model: str
    status: DeploymentStatus = "ready"
    error_rate: float = 0.0
    p99_ms: float = 40.0
    requests_per_interval: int = 200


@dataclass
class FakePlatform:
    deployments: dict[str, dict[str, FakeDeployment]] = field(default_factory=dict)
    traffic: dict[str, dict[str, int]] = field(default_factory=dict)
    mirror: dict[str, dict[str, int]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    notifications: list[tuple[str, str, str]] = field(default_factory=list)
    facts: dict[tuple[str, str], ModelFacts] = field(default_factory=dict)
    # Behaviour of deployments created from now on, by model.
    behaviour: dict[str, FakeDeployment] = field(default_factory=dict)
    fail_next: str = ""  # name of a method that raises once (a crash mid-apply)
    scaled: dict[str, int] = field(default_factory=dict)
    activity: dict[str, datetime] = field(default_factory=dict)
    # Tenants that share an endpoint (a pool); others have their own.
    endpoint_names: dict[str, str] = field(default_factory=dict)
    spec: PlatformSpec | None = None  # the stack whose tenants default facts comply with
    champions: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, name)
    refused: dict[str, datetime] = field(default_factory=dict)  # budget stops at the gateway
    # Azure ML model monitors kept: tenant -> the deployment each watches (the Azure adapter's).
    monitors: dict[str, str] = field(default_factory=dict)

    def serve(self, tenant: str, model: str) -> None:
        self.deployments[tenant] = {"blue": FakeDeployment(model)}
        self.traffic[tenant] = {"blue": 100}
        self.mirror[tenant] = {}

    def ensure_model_monitor(self, tenant: str, deployment: str) -> str:
        before = self.monitors.get(tenant)
        self.monitors[tenant] = deployment
        self.calls.append(("monitor", (tenant, deployment)))
        return "created" if before is None else "unchanged" if before == deployment else "updated"

    def _crash(self, method: str) -> None:
        if self.fail_next == method:
            self.fail_next = ""
            raise RuntimeError(f"crash in {method}")

    def endpoint(self, tenant: str) -> Endpoint:
        name = self.endpoint_names.get(tenant, f"ep-{tenant}")
        self.deployments.setdefault(tenant, {})
        traffic = self.traffic.setdefault(tenant, {})
        return Endpoint(tenant, name, dict(traffic), dict(self.mirror.setdefault(tenant, {})))

    def create_deployment(self, tenant: str, name: str, model: str) -> None:
        self._crash("create_deployment")
        self.calls.append(("create", (tenant, name, model)))
        template = self.behaviour.get(model, FakeDeployment(model))
        self.deployments[tenant][name] = FakeDeployment(
            model,
            template.status,
            template.error_rate,
            template.p99_ms,
            template.requests_per_interval,
        )

    def deployment_status(self, tenant: str, name: str) -> tuple[DeploymentStatus, str]:
        found = self.deployments[tenant].get(name)
        return (found.status, "") if found else ("missing", "")

    def set_traffic(
        self, tenant: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        self._crash("set_traffic")
        self.calls.append(("traffic", (tenant, dict(traffic), dict(mirror))))
        if sum(traffic.values()) not in (0, 100):
            raise InvariantViolation("the platform refuses traffic not summing to 0 or 100")
        self.traffic[tenant] = dict(traffic.items())
        self.mirror[tenant] = dict(mirror)

    def delete_deployment(self, tenant: str, name: str) -> None:
        if self.traffic[tenant].get(name, 0) > 0:
            raise InvariantViolation(f"{name} has traffic")
        self.calls.append(("delete", (tenant, name)))
        self.deployments[tenant].pop(name, None)
        self.traffic[tenant].pop(name, None)

    def invoke(self, tenant: str, deployment: str, body: Mapping[str, Any]) -> int:
        found = self.deployments[tenant][deployment]
        return 500 if found.error_rate >= 0.5 else 200

    def sample_request(self, tenant: str, deployment: str | None = None) -> Mapping[str, Any]:
        return {"data": [[1.0, 2.0]]}

    def serves_tenant(self, tenant: str, deployment: str) -> bool:
        return deployment in self.deployments.get(tenant, {})

    def deployment_stats(
        self, tenant: str, deployment: str, since: datetime, until: datetime
    ) -> Stats:
        found = self.deployments[tenant].get(deployment)
        share = self.traffic[tenant].get(deployment, 0) + self.mirror[tenant].get(deployment, 0)
        if found is None or share == 0:
            return Stats(0, 0, None)
        requests = found.requests_per_interval * share // 100
        return Stats(requests, round(requests * found.error_rate), found.p99_ms)

    def model_facts(self, tenant: str, name: str, version: str) -> ModelFacts:
        """The facts a test set, or those of a compliant version of the tenant's."""
        return self.facts.get((name, version)) or good_facts(name, version, tenant, self.spec)

    def crown(self, tenant: str, name: str, version: str) -> None:
        self.calls.append(("crown", (tenant, f"{name}/{version}")))
        self.champions[(tenant, name)] = version

    def scale_compute(self, tenant: str, max_nodes: int) -> None:
        self.scaled[tenant] = max_nodes

    def last_compute_activity(self, stamp: str) -> datetime | None:
        return self.activity.get(stamp)

    def refuse_scoring(self, tenant: str, until: datetime, reason: str) -> None:
        self.calls.append(("refuse", (tenant, until)))
        self.refused[tenant] = until

    def admit_scoring(self, tenant: str) -> None:
        self.calls.append(("admit", tenant))
        self.refused.pop(tenant, None)

    def notify(self, tenant: str, severity: str, message: str) -> None:
        self.notifications.append((tenant, severity, message))


@dataclass
class FakeSource:
    shift: float = 0.0
    rows: int = 5000
    retrained: list[tuple[str, str]] = field(default_factory=list)

    def baseline(self, tenant: str, deployment: str) -> tuple[str, list[str], np.ndarray]:
        rng = np.random.default_rng(1)
        reference = np.column_stack(
            [rng.normal(size=4000), rng.normal(size=4000), rng.integers(0, 2, 4000)]
        )
        return f"{tenant}-model/3", ["x1", "x2"], reference

    def inference_data(
        self,
        tenant: str,
        deployment: str,
        features: Sequence[str],
        *,
        since: datetime,
        until: datetime,
    ) -> Iterable[np.ndarray]:
        rng = np.random.default_rng(2)
        for _ in range(5):
            n = self.rows // 5
            yield np.column_stack(
                [rng.normal(size=n) + self.shift, rng.normal(size=n), rng.integers(0, 2, n)]
            )

    def request_retraining(self, tenant: str, reason: str) -> None:
        self.retrained.append((tenant, reason))
