"""Prompts as versioned assets of a tenant: each version's template and its lineage (the
model deployment it was written for, the call's parameters, the evaluation data version it
was judged on), in the tenant's own MLflow store (MLflow's prompt registry), with the
aliases a rollout moves: ``champion`` (what the tenant's callers get) and ``challenger``
(what is being canaried).

The store sits behind :class:`PromptStore` (adapters.mlflow_prompts on MLflow); one store per
tenant, as a tenant's models are, so no tenant can read or move another's prompts.

Templates use MLflow's ``{{variable}}`` placeholders; :func:`render` fills them and names
every variable a caller did not send.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tenancy import contracts
from tenancy.errors import InvalidInputError

# The aliases a rollout moves, as it moves a model's.
ALIAS_CHAMPION = contracts.ALIAS_CHAMPION
ALIAS_CHALLENGER = contracts.ALIAS_CHALLENGER
_PLACEHOLDER = re.compile(r"\{\{\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,63}$")


@dataclass(frozen=True)
class PromptLineage:
    model: str  # the deployment (tenants[].genai.models[].deployment) it is written for
    evaluation_data: str  # the evaluation set's version it was judged on
    parameters: Mapping[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class PromptVersion:
    name: str
    version: str
    template: str
    lineage: PromptLineage
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def variables(self) -> list[str]:
        return sorted({m["name"] for m in _PLACEHOLDER.finditer(self.template)})


class PromptStore(Protocol):
    """One tenant's prompts. Unknown names and versions raise ``NotFoundError``."""

    def register(
        self, name: str, template: str, lineage: PromptLineage, message: str
    ) -> PromptVersion: ...

    def get(self, name: str, version: str) -> PromptVersion: ...

    def by_alias(self, name: str, alias: str) -> PromptVersion | None: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...


def check_prompt(name: str, template: str) -> None:
    """A prompt's name and template before anything is registered."""
    problems = []
    if not _NAME.match(name):
        problems.append(f"prompt name {name!r} must be 2-64 lowercase letters, digits, - or _")
    if not template.strip():
        problems.append("the template is empty")
    if "{{" in _PLACEHOLDER.sub("", template):
        problems.append("the template has a placeholder that is not {{ name }}")
    if problems:
        raise InvalidInputError("; ".join(problems), details={"problems": problems})


def render(prompt: PromptVersion, variables: Mapping[str, str]) -> str:
    """The template with its placeholders filled; every missing variable is named."""
    missing = [name for name in prompt.variables if name not in variables]
    if missing:
        raise InvalidInputError(
            f"prompt {prompt.ref} needs {', '.join(missing)}",
            details={"missing": missing},
        )
    return _PLACEHOLDER.sub(lambda m: str(variables[m["name"]]), prompt.template)
