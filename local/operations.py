"""Operating a running embedded platform from another process: what `mlops score`,
`mlops rollout ...`, `mlops keys rotate`, `mlops drift report` and `mlops demo` do.

:class:`PlatformClient` is built from the platform's data directory (``platform.json`` says
where the services are; the admin token, the Functions host's master key and the tenant keys
are files only the owner reads). It talks to the platform through the same doors Azure has:
the gateway's scoring API with a tenant key, the Functions app's HTTP routes (approve and
abort as a signed-in approver), the Functions host's admin API (run a timer now), the state
tables, and the MLflow registries.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from adapters.local import (
    ADMIN_TOKEN_FILE,
    COLLECTED_CONTAINER,
    NOTIFICATIONS_FILE,
    GatewayAdmin,
    LocalPlatform,
)
from adapters.mlflow_prompts import MlflowPromptStore
from adapters.table_store import TableStore
from automation.audit import open_findings
from automation.budgets import stop_in_force
from automation.quality_watch import latest_checks
from automation.runner import decode
from genai.prompts import PromptLineage
from local.azurite import connection_string
from local.processes import is_platform
from local.sign_in import LOCAL_CLIENT_APP, mint
from ml.registry import RegistryLayout
from tenancy import contracts
from tenancy.errors import DependencyError, InvalidInputError, NotFoundError
from tenancy.spec import PlatformSpec

STATE_FILE = "platform.json"
KEYS_FILE = "tenant-keys.json"  # shown only by `mlops status --show-keys`
FUNCTIONS_KEY_FILE = "functions-master.key"
# The local identity provider's signing key (local/sign_in.py): whoever reads it signs in.
SIGN_IN_KEY_FILE = "sign-in.key"
#: Signs request ids (tenancy.request_ids): kept, so labels for requests scored before a
#: restart are still accepted.
REQUEST_ID_KEY_FILE = "request-id.key"


def running_state(data_dir: Path) -> dict[str, Any]:
    path = data_dir / STATE_FILE
    if not path.is_file():
        raise NotFoundError(
            f"no platform is running with data in {data_dir} (`mlops up` starts one)"
        )
    state: dict[str, Any] = json.loads(path.read_text())
    if not is_platform(int(state.get("pid", 0))):
        raise NotFoundError(
            f"the platform that ran with data in {data_dir} (pid {state.get('pid')}) died: "
            "`mlops up` stops what it left running and restores it"
        )
    return state


@dataclass
class Scored:
    status: int
    body: Any
    deployment: str  # the deployment that answered (azureml-model-deployment)
    request_id: str = ""  # what the tenant's labels name (x-request-id)


@dataclass
class Chatted:
    status: int
    body: Any
    trace_id: str  # what feedback names (x-trace-id)
    prompt_version: str = ""  # "<prompt>/<version>" when a prompt was asked for


class PlatformClient:
    def __init__(self, spec: PlatformSpec, data_dir: Path, state: Mapping[str, Any]) -> None:
        self.spec = spec
        self.data_dir = data_dir
        self.state = dict(state)
        services = state["services"]
        self.gateway_url: str = services["gateway"]
        self.functions_url: str = services["functions"]
        self.admin = GatewayAdmin(self.gateway_url, _read(data_dir / ADMIN_TOKEN_FILE))
        self.store = TableStore.from_connection_string(
            connection_string(services["azurite_blob_port"], services["azurite_table_port"])
        )
        layout = RegistryLayout(spec, data_dir, services["tracking"])
        self.layout = layout
        container = _blob_container(
            connection_string(services["azurite_blob_port"], services["azurite_table_port"])
        )
        self.adapter = LocalPlatform(spec, layout, self.admin, container)

    @classmethod
    def of(cls, spec: PlatformSpec, data_dir: Path) -> PlatformClient:
        return cls(spec, data_dir, running_state(data_dir))

    # --- tenants and keys ------------------------------------------------------------------

    def tenant(self, tenant: str) -> Mapping[str, Any]:
        for entry in self.state["tenants"]:
            if entry["id"] == tenant:
                found: Mapping[str, Any] = entry
                return found
        known = ", ".join(t["id"] for t in self.state["tenants"])
        raise InvalidInputError(f"no tenant {tenant!r} in this stack (tenants: {known})")

    def keys(self) -> dict[str, dict[str, str]]:
        path = self.data_dir / KEYS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def rotate_key(self, tenant: str, slot: str) -> str:
        """A new key for the tenant's slot (the other keeps working); kept in the keys file."""
        self.tenant(tenant)
        key = self.admin.rotate_key(tenant, slot, getpass.getuser())
        keys = self.keys()
        keys.setdefault(tenant, {})[slot] = key
        path = self.data_dir / KEYS_FILE
        path.write_text(json.dumps(keys, indent=2))
        path.chmod(0o600)
        return key

    # --- scoring ---------------------------------------------------------------------------

    # --- generative AI -----------------------------------------------------------------------

    def chat(
        self, tenant: str, deployment: str, body: Mapping[str, Any], *, slot: str = "primary"
    ) -> Chatted:
        """A chat completion through the gateway with the tenant's key."""
        self.tenant(tenant)
        key = self.keys().get(tenant, {}).get(slot, "")
        url = f"{self.gateway_url}/{contracts.GENAI_API_PATH}/{deployment}/chat/completions"
        try:
            answer = requests.post(
                url, json=dict(body), headers={"Authorization": f"Bearer {key}"}, timeout=60
            )
        except requests.RequestException as error:
            raise DependencyError(f"the gateway is not reachable: {error}") from None
        return Chatted(
            answer.status_code,
            answer.json(),
            answer.headers.get("x-trace-id", ""),
            answer.headers.get("x-prompt-version", ""),
        )

    def publish_prompt(
        self, tenant: str, name: str, template: str, lineage: PromptLineage
    ) -> dict[str, Any]:
        """Register a prompt version in the tenant's store, gate it on its evaluation set,
        and roll it out when it passes: what a tenant's prompt pipeline does."""
        entry = self.spec.tenant(tenant)
        if entry.genai is None:
            raise InvalidInputError(f"tenant {tenant} has no generative AI enabled")
        store = MlflowPromptStore(self.layout.store_for(entry).tracking_uri, owner=tenant)
        version = store.register(name, template, lineage, f"published by {getpass.getuser()}")
        verdict = self.admin.prompt_action(tenant, name, version.version, "gate")
        rollout = None
        if verdict["passed"]:
            rollout = self.admin.prompt_action(tenant, name, version.version, "rollout")
        return {"version": version.version, "verdict": verdict, "rollout": rollout}

    def score(
        self,
        tenant: str,
        body: Any | None = None,
        *,
        slot: str = "primary",
        deployment: str | None = None,
        key: str | None = None,
    ) -> Scored:
        """Through the gateway with the tenant's key, as the tenant's client would."""
        entry = self.tenant(tenant)
        key = key or self.keys().get(tenant, {}).get(slot, "")
        headers = {"Authorization": f"Bearer {key}"}
        if deployment:
            headers["azureml-model-deployment"] = deployment
        payload = entry["sample_request"] if body is None else body
        try:
            answer = requests.post(entry["scoring_uri"], json=payload, headers=headers, timeout=30)
        except requests.RequestException as error:
            raise DependencyError(f"the gateway is not reachable: {error}") from None
        try:
            content: Any = answer.json()
        except ValueError:
            content = answer.text
        return Scored(
            answer.status_code,
            content,
            answer.headers.get("azureml-model-deployment", ""),
            answer.headers.get("x-request-id", ""),
        )

    def feedback(
        self, tenant: str, labels: Sequence[tuple[str, Any]], *, slot: str = "primary"
    ) -> dict[str, Any]:
        """Labels for requests the tenant scored (request id, label), as its client sends
        them; the gateway's answer (accepted, unknown ids)."""
        entry = self.tenant(tenant)
        url = str(entry["scoring_uri"]).rsplit("/score", 1)[0] + "/feedback"
        key = self.keys().get(tenant, {}).get(slot, "")
        body = {"labels": [{"request_id": rid, "label": label} for rid, label in labels]}
        try:
            answer = requests.post(
                url, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
        except requests.RequestException as error:
            raise DependencyError(f"the gateway is not reachable: {error}") from None
        if answer.status_code != 200:
            raise DependencyError(f"feedback answered {answer.status_code}: {answer.text[:300]}")
        found: dict[str, Any] = answer.json()
        return found

    def budget_stop(self, tenant: str) -> str | None:
        """The day a budget stop in force on ``tenant`` ends (None: none is)."""
        record = self.store.get(contracts.TABLE_BUDGET_STATE, "blocked", tenant)
        if record is None or not stop_in_force(record.data, datetime.now(UTC)):
            return None
        return datetime.fromisoformat(record.data["blocked_until"]).date().isoformat()

    def quality(self) -> dict[str, dict[str, Any]]:
        """The latest quality check of each tenant (the quality timer's)."""
        return latest_checks(self.store)

    # --- rollouts --------------------------------------------------------------------------

    def rollouts(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every rollout (and recorded gate rejection), oldest first."""
        found = []
        for record in self.store.query(contracts.TABLE_ROLLOUTS, tenant):
            if "phase" in record.data:
                state, pending = decode(record.data)
                found.append(
                    {
                        "tenant": state.tenant,
                        "model": state.model,
                        "phase": state.phase.value,
                        "traffic": dict(state.traffic),
                        "blue": state.blue,
                        "green": state.green,
                        "reason": state.reason,
                        "revision": state.revision,
                        "pending": len(pending),
                    }
                )
            else:
                found.append(
                    {
                        "tenant": record.partition,
                        "model": record.data.get("model", ""),
                        "phase": "rejected",
                        "traffic": {},
                        "reason": "; ".join(record.data.get("reasons", [])),
                        "revision": 0,
                        "pending": 0,
                    }
                )
        return found

    def rollout(self, tenant: str, model: str) -> dict[str, Any]:
        """One rollout with its audit trail."""
        for entry in self.rollouts(tenant):
            if entry["model"] == model:
                subject = f"rollout {model}"
                entry["audit"] = [a for a in self.audit(tenant) if a.get("subject") == subject]
                return entry
        raise NotFoundError.for_item("rollout", f"{tenant}/{model}")

    def audit(self, tenant: str) -> list[dict[str, Any]]:
        return [dict(r.data) for r in self.store.query(contracts.TABLE_AUDIT, tenant)]

    def command(
        self, tenant: str, model: str, action: str, *, persona: str = "", reason: str = ""
    ) -> tuple[int, Any]:
        """approve / abort through the Functions app's route, signed in as a member of one
        of the tenant's personas (a token of the local identity provider)."""
        spec = self.spec.tenant(tenant)
        policy = self.spec.rollout_for(spec)
        persona = persona or policy.approver_personas[0]
        groups = spec.personas.model_dump().get(persona) or []
        if not groups:
            raise InvalidInputError(f"{tenant} has no members in persona {persona!r}")
        name, version = _split_model(model)
        # Signed in as App Service authentication would sign in an Entra user: a token for
        # the automation's application that lists the persona's groups.
        token = mint(
            _read(self.data_dir / SIGN_IN_KEY_FILE),
            {
                "aud": contracts.entra_audiences(self.spec.function_app.alert_webhook_app_id)[0],
                "azp": LOCAL_CLIENT_APP,
                "name": getpass.getuser(),
                "groups": list(groups),
            },
        )
        url = f"{self.functions_url}/api/rollouts/{tenant}/{name}/{version}/{action}"
        answer = requests.post(
            url,
            params={"reason": reason} if reason else None,
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        )
        return answer.status_code, answer.json()

    # --- automation ------------------------------------------------------------------------

    def run_function(self, name: str) -> None:
        """Run a timer function now (the Functions host's admin API)."""
        answer = requests.post(
            f"{self.functions_url}/admin/functions/{name}",
            json={"input": ""},
            headers={"x-functions-key": _read(self.data_dir / FUNCTIONS_KEY_FILE)},
            timeout=300,
        )
        if answer.status_code != 202:
            raise DependencyError(f"{name} did not run: {answer.status_code} {answer.text[:200]}")

    def notifications(self) -> list[dict[str, Any]]:
        path = self.data_dir / NOTIFICATIONS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def findings(self) -> list[dict[str, Any]]:
        """The policy audit's open findings, by tenant, rule and resource."""
        return [dataclasses.asdict(f) for f in open_findings(self.store)]

    def events(self, partition: str) -> list[dict[str, Any]]:
        return [
            {"key": r.row, **r.data} for r in self.store.query(contracts.TABLE_EVENTS, partition)
        ]


def _read(path: Path) -> str:
    if not path.is_file():
        raise DependencyError(f"{path} is missing: is the platform up?")
    return path.read_text(encoding="utf-8").strip()


def _split_model(model: str) -> tuple[str, str]:
    name, _, version = model.partition("/")
    if not name or not version.isdigit():
        raise InvalidInputError(f"give the model as <name>/<version>, got {model!r}")
    return name, version


def _blob_container(connection: str) -> Any:
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    return BlobServiceClient.from_connection_string(connection).get_container_client(
        COLLECTED_CONTAINER
    )
