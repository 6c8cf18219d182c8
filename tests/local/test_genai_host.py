"""The embedded platform's generative AI host: prompts in each tenant's own store, the gate
and rollouts behind the gateway's admin routes, traces in each tenant's own log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from automation.store import MemoryStore
from genai.prompts import PromptLineage
from local.gateway import Gateway, TenantLimits
from local.genai_host import FileTraces, GenAIHost
from local.keys import KeyRing
from local.serve import BackgroundServer
from ml.registry import RegistryLayout
from tests.genai.conftest import genai_spec

LINEAGE = PromptLineage("chat", "capitals-v1")
ADMIN = {"Authorization": "Bearer admin-token"}


class Client:
    """requests against the running gateway, with paths relative to its URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=60, **kwargs)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[GenAIHost, Client, dict[str, str]]]:
    spec = genai_spec(evaluation={"thresholds": {"contains": 1.0}, "min_examples": 6})
    host = GenAIHost(spec, tmp_path, RegistryLayout(spec, tmp_path))
    ring = KeyRing(MemoryStore())
    keys = {t: ring.issue(t)["primary"] for t in ("contoso", "adatum")}
    limits = {t: TenantLimits(600, 4096) for t in keys}
    gateways: list[Gateway] = []

    def admin_only(request: Any) -> Any:
        return gateways[0]._admin(request)

    gateway = Gateway(
        ring, limits, "admin-token", chat=host.chat, admin_routes=host.routes(admin_only)
    )
    gateways.append(gateway)
    server = BackgroundServer(gateway.app).start()
    try:
        yield host, Client(server.url), keys
    finally:
        server.stop()


def test_a_prompt_is_gated_rolled_out_and_served_through_the_admin_routes(
    served: tuple[GenAIHost, Client, dict[str, str]],
) -> None:
    host, client, keys = served
    store = host.store_for("contoso")
    store.register("capitals", "Tell me everything about {{country}}.", LINEAGE, "vague")
    store.register("capitals", "What is the capital of {{country}}?", LINEAGE, "plain")
    base = "/admin/genai/contoso/prompts/capitals/versions"
    assert client.post(f"{base}/1/gate").status_code == 401  # the admin token is needed
    rejected = client.post(f"{base}/1/gate", headers=ADMIN).json()
    assert rejected["passed"] is False and rejected["evidence"][0]["scorer"] == "contains"
    assert client.post(f"{base}/2/gate", headers=ADMIN).json()["passed"] is True
    live = client.post(f"{base}/2/rollout", headers=ADMIN).json()
    assert live["phase"] == "promoted"
    asked = {"prompt": "capitals", "variables": {"country": "Italy"}, "user": "u1"}
    answer = client.post(
        "/genai/chat/chat/completions",
        json=asked,
        headers={"Authorization": f"Bearer {keys['contoso']}"},
    )
    assert answer.status_code == 200 and answer.headers["x-prompt-version"] == "capitals/2"
    status = client.get("/admin/genai", headers=ADMIN).json()
    assert status["contoso"]["prompts"]["capitals"]["champion"] == "2"
    assert status["contoso"]["tokens"]["month"] == answer.json()["usage"]["total_tokens"]
    assert (
        client.post(f"{base.replace('contoso', 'adatum')}/1/gate", headers=ADMIN).status_code == 404
    )
    assert client.post(f"{base}/2/promote", headers=ADMIN).status_code == 400


def test_traces_go_to_the_tenants_own_log_with_pii_redacted(
    served: tuple[GenAIHost, Client, dict[str, str]], tmp_path: Path
) -> None:
    host, client, keys = served
    asked = {"messages": [{"role": "user", "content": "I am eve@example.net: capital of Spain?"}]}
    answer = client.post(
        "/genai/chat/chat/completions",
        json=asked,
        headers={"api-key": keys["contoso"]},
    )
    assert answer.status_code == 200
    [trace] = host.traces.read("contoso")
    assert trace["trace_id"] == answer.headers["x-trace-id"]
    assert trace["request"][0]["content"] == "I am [EMAIL]: capital of Spain?"
    assert "eve@" not in json.dumps(trace)
    assert host.traces.read("adatum") == []
    assert [p.parent.name for p in (tmp_path / "genai").glob("*/traces-*.jsonl")] == ["contoso"]


def test_file_traces_keep_each_tenant_apart(tmp_path: Path) -> None:
    traces = FileTraces(tmp_path)
    traces.write("contoso", {"trace_id": "a"})
    traces.write("fabrikam", {"trace_id": "b"})
    traces.write("contoso", {"trace_id": "c"})
    assert [t["trace_id"] for t in traces.read("contoso")] == ["a", "c"]
    assert [t["trace_id"] for t in traces.read("fabrikam")] == ["b"]


def test_the_months_tokens_survive_a_restart(
    served: tuple[GenAIHost, Client, dict[str, str]], tmp_path: Path
) -> None:
    host, client, keys = served
    asked = {"messages": [{"role": "user", "content": "In one word: the capital of Spain?"}]}
    headers = {"Authorization": f"Bearer {keys['contoso']}"}
    used = client.post("/genai/chat/chat/completions", json=asked, headers=headers).json()
    host.stop()  # saves the ledger, as the platform's stop does
    again = GenAIHost(host.spec, tmp_path, RegistryLayout(host.spec, tmp_path))
    assert again.ledger.spent("contoso")["month"] == used["usage"]["total_tokens"]
