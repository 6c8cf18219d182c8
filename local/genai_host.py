"""Generative AI on the embedded platform: the tenants' chat completions behind the gateway
(genai.chat), their prompts in their own MLflow stores, the gate and the prompt rollouts, and
the gateway admin routes `mlops` uses for them.

- The model is the stand-in (genai.standin): no weights, deterministic. On Azure the same
  requests reach the tenant's deployments through API Management (infra.genai).
- Traces go to one JSON-lines log per tenant and day, under ``<data>/genai/<tenant>/``:
  payloads as the model saw them and as the caller got them, PII redacted.
- Prompt rollouts advance on a timer (every half of the shortest analysis interval of the
  stack's genai tenants), as the automation's rollout timer advances model rollouts.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.mlflow_prompts import MlflowPromptStore
from genai.chat import ChatService
from genai.datasets import evaluation_set
from genai.gate import PromptGate
from genai.prompts import ALIAS_CHALLENGER, ALIAS_CHAMPION
from genai.rollout import PromptRollouts
from genai.standin import complete
from genai.tokens import TokenLedger, TokenLimits
from ml.registry import RegistryLayout
from tenancy.errors import InvalidInputError, MlopsError, NotFoundError, http_status_for
from tenancy.spec import PlatformSpec

logger = logging.getLogger("tenant_mlops.genai")
GENAI_DIR = "genai"
ROLLOUTS_FILE = "prompt-rollouts.json"
#: Tokens spent per tenant and month, kept across restarts (a restart must not hand a
#: tenant its month's budget again).
LEDGER_FILE = "tokens.json"


def standin_model(
    tenant: str, deployment: str, messages: Sequence[Mapping[str, str]], max_tokens: int
) -> Mapping[str, Any]:
    """Every tenant's deployments, answered by the stand-in."""
    return complete(messages, max_tokens, deployment)


class FileTraces:
    """A tenant's traces: one JSON line each, in its own folder, a file a day."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def write(self, tenant: str, record: Mapping[str, Any]) -> None:
        folder = self.root / tenant
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._lock:
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / f"traces-{day}.jsonl").open("a", encoding="utf-8") as log:
                log.write(line)

    def read(self, tenant: str) -> list[dict[str, Any]]:
        lines = []
        for path in sorted((self.root / tenant).glob("traces-*.jsonl")):
            lines += [json.loads(line) for line in path.read_text().splitlines() if line]
        return lines


class GenAIHost:
    def __init__(self, spec: PlatformSpec, data_dir: Path, layout: RegistryLayout) -> None:
        self.spec = spec
        self.layout = layout
        self.tenants = [t.id for t in spec.tenants if t.genai is not None]
        root = data_dir / GENAI_DIR
        root.mkdir(parents=True, exist_ok=True)
        self.traces = FileTraces(root)
        self._stores: dict[str, MlflowPromptStore] = {}
        self.rollouts = PromptRollouts(
            spec, self.store_for, standin_model, path=root / ROLLOUTS_FILE
        )
        self.gate = PromptGate(spec, self.store_for, standin_model)
        limits = {
            t.id: TokenLimits(t.genai.tokens_per_minute, t.genai.tokens_per_month)
            for t in spec.tenants
            if t.genai is not None
        }
        self.ledger = TokenLedger(limits, clock=lambda: datetime.now(UTC))
        self._ledger_file = root / LEDGER_FILE
        if self._ledger_file.is_file():
            self.ledger.restore(json.loads(self._ledger_file.read_text()))
        self.chat = ChatService(
            spec, self.ledger, standin_model, self.traces, prompts=self.rollouts
        )
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def store_for(self, tenant: str) -> MlflowPromptStore:
        """The tenant's prompts: in its own store (a pool's, under its name)."""
        if tenant not in self._stores:
            store = self.layout.store_for(self.spec.tenant(tenant))
            self._stores[tenant] = MlflowPromptStore(store.tracking_uri, owner=tenant)
        return self._stores[tenant]

    # --- the timer ---------------------------------------------------------------------------

    def start_ticking(self) -> None:
        intervals = [
            t.genai.rollout.analysis.interval_seconds for t in self.spec.tenants if t.genai
        ]
        if not intervals or self._ticker is not None:
            return
        period = max(1.0, min(intervals) / 2)
        self._ticker = threading.Thread(target=self._tick_every, args=(period,), daemon=True)
        self._ticker.start()

    def _tick_every(self, period: float) -> None:
        while not self._stop.wait(period):
            try:
                self.rollouts.tick(datetime.now(UTC))
                self.save_ledger()
            except Exception:  # a failed tick is retried at the next one
                logger.exception("prompt rollouts did not advance")

    def save_ledger(self) -> None:
        """The months' tokens, written whole (a crash leaves the previous file)."""
        temporary = self._ledger_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.ledger.months(), sort_keys=True))
        temporary.replace(self._ledger_file)

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        self.save_ledger()

    # --- what `mlops` asks ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per genai tenant: tokens and spend, and each prompt's champion and rollout."""
        found = {}
        for tenant in self.tenants:
            store = self.store_for(tenant)
            prompts = {}
            for name in store.names():
                champion = store.by_alias(name, ALIAS_CHAMPION)
                challenger = store.by_alias(name, ALIAS_CHALLENGER)
                state = self.rollouts.state(tenant, name)
                prompts[name] = {
                    "champion": champion.version if champion else None,
                    "challenger": challenger.version if challenger else None,
                    "rollout": {
                        "version": state.model.rpartition("/")[2],
                        "phase": state.phase.value,
                        "traffic": self.rollouts.traffic(tenant, name),
                        "reason": state.reason,
                    }
                    if state
                    else None,
                }
            found[tenant] = {**self.chat.usage(tenant), "prompts": prompts}
        return found

    def judge(self, tenant: str, prompt: str, version: str) -> dict[str, Any]:
        """The gate on the version's own evaluation set (its lineage names it)."""
        found = self.store_for(tenant).get(prompt, version)
        examples = evaluation_set(found.lineage.evaluation_data)
        verdict = self.gate.judge(tenant, prompt, version, examples)
        return {
            "passed": verdict.passed,
            "means": verdict.means,
            "failed_scorers": verdict.failed_scorers,
            "evidence": [
                {"example": e.example, "scorer": e.scorer, "score": e.score, "answer": e.answer}
                for e in verdict.evidence
            ][:20],
        }

    def roll_out(self, tenant: str, prompt: str, version: str) -> dict[str, Any]:
        found = self.store_for(tenant).get(prompt, version)
        inputs = [e.inputs for e in evaluation_set(found.lineage.evaluation_data)]
        state = self.rollouts.start(tenant, prompt, version, datetime.now(UTC), inputs)
        self.rollouts.tick(datetime.now(UTC))
        current = self.rollouts.state(tenant, prompt) or state
        return {"phase": current.phase.value, "reason": current.reason}

    # --- admin routes --------------------------------------------------------------------------

    def routes(self, check: Any) -> list[Route]:
        """The gateway's admin routes for generative AI; ``check`` refuses a request
        without the admin token (it returns the refusal)."""

        async def handle(request: Request) -> Response:
            refused = check(request)
            if refused is not None:
                return refused  # type: ignore[no-any-return]
            try:
                return JSONResponse(self._dispatch(request))
            except MlopsError as error:
                return JSONResponse({"error": error.to_dict()}, http_status_for(error))

        return [
            Route("/admin/genai", handle, methods=["GET"]),
            Route("/admin/genai/tick", handle, methods=["POST"]),
            Route(
                "/admin/genai/{tenant}/prompts/{prompt}/versions/{version}/{action}",
                handle,
                methods=["POST"],
            ),
        ]

    def _dispatch(self, request: Request) -> Any:
        if request.url.path == "/admin/genai":
            return self.status()
        if request.url.path == "/admin/genai/tick":
            return {"transitions": len(self.rollouts.tick(datetime.now(UTC)))}
        params = request.path_params
        tenant = str(params["tenant"])
        if tenant not in self.tenants:
            raise NotFoundError(f"tenant {tenant} has no generative AI enabled")
        action = params["action"]
        if action == "gate":
            return self.judge(tenant, params["prompt"], params["version"])
        if action == "rollout":
            return self.roll_out(tenant, params["prompt"], params["version"])
        raise InvalidInputError(f"unknown action {action!r}: gate or rollout")
