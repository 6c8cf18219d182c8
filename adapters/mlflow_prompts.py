"""A tenant's prompts in its MLflow store: MLflow's prompt registry (``register_prompt``,
versions, aliases), the lineage kept as the version's tags.

https://mlflow.org/docs/latest/genai/prompt-registry/ (versions are immutable; aliases
point at one version and move).
"""

from __future__ import annotations

import json
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from genai.prompts import PromptLineage, PromptVersion, check_prompt
from tenancy.errors import InvalidInputError, NotFoundError

TAG_MODEL = "tenant_mlops.model"
TAG_EVALUATION_DATA = "tenant_mlops.evaluation_data"
TAG_PARAMETERS = "tenant_mlops.parameters"


class MlflowPromptStore:
    """``owner``: the tenant whose prompts these are. A pool's tenants share the pool's
    store, so each prompt is kept under its owner's name (``<owner>.<name>``) and a tenant
    sees only its own."""

    def __init__(self, tracking_uri: str, owner: str | None = None) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.owner = owner

    def _stored(self, name: str) -> str:
        return f"{self.owner}.{name}" if self.owner else name

    def _shown(self, stored: str) -> str:
        prefix = f"{self.owner}." if self.owner else ""
        return stored.removeprefix(prefix)

    def names(self) -> list[str]:
        """The owner's prompts."""
        found = self.client.search_prompts(max_results=1000)
        prefix = f"{self.owner}." if self.owner else ""
        return sorted(self._shown(p.name) for p in found if p.name.startswith(prefix))

    def register(
        self, name: str, template: str, lineage: PromptLineage, message: str
    ) -> PromptVersion:
        check_prompt(name, template)
        tags = {
            TAG_MODEL: lineage.model,
            TAG_EVALUATION_DATA: lineage.evaluation_data,
            TAG_PARAMETERS: json.dumps(dict(lineage.parameters), sort_keys=True),
        }
        made = self.client.register_prompt(
            self._stored(name), template, commit_message=message, tags=tags
        )
        return self._version(made)

    def get(self, name: str, version: str) -> PromptVersion:
        try:
            found = self.client.get_prompt_version(self._stored(name), version)
        except MlflowException:
            found = None
        if found is None:
            raise NotFoundError.for_item("prompt version", f"{name}/{version}")
        return self._version(found)

    def by_alias(self, name: str, alias: str) -> PromptVersion | None:
        try:
            found = self.client.get_prompt_version_by_alias(self._stored(name), alias)
        except MlflowException:
            return None
        return self._version(found) if found is not None else None

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.get(name, version)  # names a version that is not there
        self.client.set_prompt_alias(self._stored(name), alias, int(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """The alias points nowhere (nothing to do when it already does)."""
        if self.by_alias(name, alias) is not None:
            self.client.delete_prompt_alias(self._stored(name), alias)

    def _version(self, found: Any) -> PromptVersion:
        tags = dict(found.tags or {})
        try:
            parameters = json.loads(tags.get(TAG_PARAMETERS, "{}"))
        except json.JSONDecodeError:
            raise InvalidInputError(f"prompt {found.name}'s parameters tag is not JSON") from None
        return PromptVersion(
            name=self._shown(str(found.name)),
            version=str(found.version),
            template=str(found.template),
            lineage=PromptLineage(
                model=tags.get(TAG_MODEL, ""),
                evaluation_data=tags.get(TAG_EVALUATION_DATA, ""),
                parameters=parameters,
            ),
            aliases=tuple(sorted(getattr(found, "aliases", None) or ())),
        )
