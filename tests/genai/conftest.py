"""What the genai tests share: a platform spec with contoso's genai section as a test needs
it, the stand-in model as the tenant's deployments, and traces kept in memory."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from genai.gate import ChatModel
from genai.standin import complete
from tenancy import PlatformSpec, parse_platform_spec
from tests.tenancy.conftest import GENAI, stack_document


def genai_spec(**section: Any) -> PlatformSpec:
    """The local stack with contoso's genai section: the shared fixture's, with ``section``'s
    keys replacing its own."""
    document = stack_document("local")
    genai = {**copy.deepcopy(GENAI), **section}
    next(t for t in document["tenants"] if t["id"] == "contoso")["genai"] = genai
    return parse_platform_spec(document)


def standin(calls: list[tuple[str, str]] | None = None) -> ChatModel:
    """The tenant's deployments, answered by the stand-in (calls noted when asked)."""
    lock = threading.Lock()

    def model(
        tenant: str, deployment: str, messages: Sequence[Mapping[str, str]], max_tokens: int
    ) -> Mapping[str, Any]:
        if calls is not None:
            with lock:
                calls.append((tenant, deployment))
        return complete(messages, max_tokens, deployment)

    return model


class MemoryTraces:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def write(self, tenant: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.records.append((tenant, dict(record)))

    def of(self, tenant: str) -> list[dict[str, Any]]:
        return [record for owner, record in self.records if owner == tenant]
