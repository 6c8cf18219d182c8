"""The pack's rules over a plan recorded under mocks (``mlops plan``): the same functions,
the same levels and settings as ``pulumi preview --policy-pack policies``."""

from __future__ import annotations

from infra.offline import OfflineRun, RecordedResource
from policies.config import PackConfig
from policies.core import Props, Resource
from policies.evaluation import UNKNOWN_LEVEL, Violation, evaluate_resources
from tenancy import contracts

__all__ = ["UNKNOWN_LEVEL", "Violation", "as_resource", "evaluate", "evaluate_resources"]


def as_resource(record: RecordedResource) -> Resource:
    return Resource(
        type=record.type,
        urn=record.urn,
        name=record.name,
        props=Props(record.inputs),
        parent=record.parent,
        property_dependencies=record.property_dependencies,
        # A plan from scratch: every input is what creation sends, so nothing is "ignored".
        dependencies=record.dependencies,
    )


def _judged(type_token: str) -> bool:
    """Azure resources, and the program's dynamic ones (the package upload, a batch
    default), which some rules follow."""
    return type_token.startswith("azure-native:") or type_token == contracts.DYNAMIC_RESOURCE_TYPE


def evaluate(run: OfflineRun, config: PackConfig) -> list[Violation]:
    """Every violation of every enabled rule, resource rules first, in plan order."""
    return evaluate_resources([as_resource(r) for r in run.records if _judged(r.type)], config)
