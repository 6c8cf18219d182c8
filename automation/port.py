"""What the automation needs from a platform, as one Protocol (the ``AbstractStore`` shape of
MLflow): the Azure adapter implements it with azure-ai-ml and Azure Monitor, the local
adapter with the embedded platform, the tests with a fake. The automation is written once,
against this port."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol

from automation.rollout import Stats
from ml.quality import LabelledWindow
from policies.model_rules import ModelFacts

DeploymentStatus = Literal["creating", "ready", "failed", "missing"]


@dataclass(frozen=True)
class Endpoint:
    tenant: str
    name: str
    traffic: Mapping[str, int]
    mirror: Mapping[str, int]

    @property
    def live(self) -> str:
        """The deployment with the most live traffic (the rollout's blue)."""
        if not self.traffic:
            return "blue"
        return max(sorted(self.traffic), key=lambda name: self.traffic[name])

    @property
    def serving(self) -> bool:
        """Whether any deployment takes live traffic (an endpoint starts serving nothing)."""
        return any(share > 0 for share in self.traffic.values())


class PlatformPort(Protocol):
    # --- serving ------------------------------------------------------------------------
    def endpoint(self, tenant: str) -> Endpoint: ...

    def create_deployment(self, tenant: str, name: str, model: str) -> None:
        """Start creating (or replacing) ``name`` with ``model`` ("<name>/<version>") at 0 %
        traffic; returns at once, :meth:`deployment_status` says when it is ready."""
        ...

    def deployment_status(self, tenant: str, name: str) -> tuple[DeploymentStatus, str]: ...

    def set_traffic(
        self, tenant: str, traffic: Mapping[str, int], mirror: Mapping[str, int]
    ) -> None:
        """One update of live and mirrored traffic (absolute values)."""
        ...

    def delete_deployment(self, tenant: str, name: str) -> None: ...

    def invoke(self, tenant: str, deployment: str, body: Mapping[str, Any]) -> int:
        """Score through the endpoint with the ``azureml-model-deployment`` header; the
        HTTP status."""
        ...

    def sample_request(self, tenant: str, deployment: str | None = None) -> Mapping[str, Any]:
        """A valid request body for the tenant's model on ``deployment`` (default: the live
        one), for smoke tests."""
        ...

    def serves_tenant(self, tenant: str, deployment: str) -> bool:
        """Whether ``deployment`` carries a model of ``tenant`` (a pooled deployment carries
        the models of the pool's tenants that are live)."""
        ...

    def deployment_stats(
        self, tenant: str, deployment: str, since: datetime, until: datetime
    ) -> Stats: ...

    # --- registry, compute, notifications ------------------------------------------------
    def model_facts(self, tenant: str, name: str, version: str) -> ModelFacts: ...

    def crown(self, tenant: str, name: str, version: str) -> None:
        """Make ``version`` the registry's champion of ``name`` for ``tenant`` and clear its
        challenger (idempotent: a rollout re-applies it after a crash)."""
        ...

    def scale_compute(self, tenant: str, max_nodes: int) -> None: ...

    def refuse_scoring(self, tenant: str, until: datetime, reason: str) -> None:
        """The gateway refuses ``tenant``'s scoring requests until ``until`` (a budget
        spent), naming ``reason``; its neighbours in a pool are untouched. Idempotent."""
        ...

    def admit_scoring(self, tenant: str) -> None:
        """Lift :meth:`refuse_scoring` (idempotent)."""
        ...

    def last_compute_activity(self, stamp: str) -> datetime | None:
        """When the stamp's compute last ran a node (None: never)."""
        ...

    def notify(self, tenant: str, severity: str, message: str) -> None: ...


class QualitySource(Protocol):
    """What quality needs from the platform (the adapters read the registry and blobs)."""

    def live_model(self, tenant: str, deployment: str) -> tuple[str, str]:
        """(name, version) of the tenant's model the deployment serves."""
        ...

    def labelled(
        self, tenant: str, deployment: str, *, since: datetime, until: datetime
    ) -> LabelledWindow: ...


@dataclass(frozen=True)
class Usage:
    """What one tenant's requests took of an endpoint's deployments in a window."""

    requests: int = 0
    rows: int = 0
    scoring_ms: float = 0.0  # the deployments' time on them

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.requests + other.requests,
            self.rows + other.rows,
            self.scoring_ms + other.scoring_ms,
        )


class UsageSource(Protocol):
    """Metered usage (the adapters read it from the collected data, where every row names
    its tenant and its share of the request's scoring time)."""

    def usage(self, tenant: str, *, since: datetime, until: datetime) -> dict[str, Usage]:
        """Per tenant served by ``tenant``'s endpoint (a pool's: every pooled tenant)."""
        ...


@dataclass(frozen=True)
class Spend:
    """What a stamp has cost in its budget's current period."""

    amount: float
    currency: str
    period_start: date


class CostSource(Protocol):
    """Each stamp's spend (Azure: its budget's ``currentSpend``; the embedded platform: its
    endpoint's instance-hours at the spec's prices)."""

    def stamp_spend(self, stamp: str, now: datetime) -> Spend:
        """Spend of ``stamp`` (``tenant-<id>`` or ``pool-<id>``) in the period of ``now``."""
        ...
