"""An environment's Azure ML registry: where a tenant's model crosses from one environment's
workspace to the next one's (MLOps v2's cross-workspace promotion).

- ``share``: the source workspace's version is copied into the registry by Azure ML itself
  (a ``WorkspaceAssetReference`` import: files, tags and the link to the job that trained
  it), under a name that carries the tenant (``naming.registry_model``), since one registry
  serves every tenant of the environment. Sharing again what is there already changes nothing.
- ``files``: the registry version's files, for the target workspace to register its own
  version from (its Event Grid ModelRegistered is what brings a version to the target's
  automation; a registry publishes no such event).

Rules relied on:
- sharing a workspace model to a registry, and a registry's models being usable by every
  workspace in its regions:
  https://learn.microsoft.com/azure/machine-learning/how-to-share-models-pipelines-across-workspaces-with-registries
- reading a registry's assets takes Reader (or registries/assets/read), creating them
  registries/assets/write (Contributor and Owner hold it):
  https://learn.microsoft.com/azure/machine-learning/how-to-manage-registries#user-role-based-access-control
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from azure.ai.ml import MLClient
from azure.ai.ml.entities._assets.workspace_asset_reference import WorkspaceAssetReference
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceNotFoundError

from tenancy.errors import ConflictError


class AzureMlRegistry:
    def __init__(
        self,
        name: str,
        credential: TokenCredential,
        subscription_id: str,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._credential = credential
        self._subscription_id = subscription_id
        self._client_options = dict(client_options or {})

    @cached_property
    def _client(self) -> MLClient:
        # The registry's own subscription and group come from Azure ML's registry discovery.
        return MLClient(
            self._credential,
            self._subscription_id,
            registry_name=self.name,
            show_progress=False,
            **self._client_options,
        )

    def source_of(self, name: str, version: str) -> str | None:
        """The workspace asset the registry's version was shared from (None: not there)."""
        try:
            found = self._client.models.get(name, version)
        except ResourceNotFoundError:
            return None
        return str((found.properties or {}).get("sourceAssetId") or "")

    def share(self, asset_id: str, name: str, version: str) -> bool:
        """Copy the workspace asset ``asset_id`` in as ``name``/``version``; False when it
        is there already (from the same asset). Another asset under the same name and
        version is a conflict, never overwritten."""
        existing = self.source_of(name, version)
        if existing is not None:
            if existing and existing != asset_id:
                raise ConflictError(
                    f"{self.name} holds {name}/{version} already, shared from {existing}, "
                    f"not from {asset_id}"
                )
            return False
        self._client.models.create_or_update(
            WorkspaceAssetReference(name=name, version=version, asset_id=asset_id)
        )
        return True

    def files(self, name: str, version: str) -> dict[str, bytes]:
        """{path below the model's folder: content} of the registry version."""
        with tempfile.TemporaryDirectory(prefix="mlops-registry-") as scratch:
            self._client.models.download(name, version, download_path=scratch)
            root = Path(scratch) / name
            folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
            base = folders[0] if len(folders) == 1 else root
            return {
                path.relative_to(base).as_posix(): path.read_bytes()
                for path in sorted(base.rglob("*"))
                if path.is_file()
            }
