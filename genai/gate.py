"""The prompt gate: a new prompt version of a tenant is evaluated offline on the tenant's
evaluation set, with the scorers and thresholds of the tenant's spec
(``tenants[].genai.evaluation``), through the deployment its lineage names and under the
tenant's guardrails. Only a version that passes becomes the ``challenger`` (what a prompt
rollout then canaries); a failing one is rejected with its per-example evidence and its
aliases are left as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genai.evaluation import DETERMINISTIC, Example, JudgeScorer, Scorer, Verdict, evaluate
from genai.guardrails import Guardrails
from genai.prompts import ALIAS_CHALLENGER, PromptStore, render
from tenancy.errors import InvalidInputError
from tenancy.spec import GenAISpec, PlatformSpec

#: (tenant, deployment, messages, max_tokens) -> a chat completion (its OpenAI shape).
ChatModel = Callable[[str, str, Sequence[Mapping[str, str]], int], Mapping[str, Any]]
JUDGE_MAX_TOKENS = 64


def content_of(completion: Mapping[str, Any]) -> str:
    try:
        return str(completion["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise InvalidInputError("the model's answer has no choices[0].message.content") from None


@dataclass
class PromptGate:
    spec: PlatformSpec
    store_for: Callable[[str], PromptStore]  # the tenant's own prompt store
    model: ChatModel

    def _genai(self, tenant: str) -> GenAISpec:
        genai = self.spec.tenant(tenant).genai
        if genai is None:
            raise InvalidInputError(f"tenant {tenant} has no generative AI enabled")
        return genai

    def judge(self, tenant: str, name: str, version: str, examples: Sequence[Example]) -> Verdict:
        """Evaluate the version; crown it challenger only if it passes."""
        genai = self._genai(tenant)
        store = self.store_for(tenant)
        prompt = store.get(name, version)
        deployments = {m.deployment for m in genai.models}
        if prompt.lineage.model not in deployments:
            raise InvalidInputError(
                f"prompt {prompt.ref} is written for {prompt.lineage.model!r}, not one of "
                f"tenant {tenant}'s deployments ({', '.join(sorted(deployments))})"
            )
        rails = Guardrails(
            genai.guardrails.redact_pii, genai.guardrails.blocked_terms, genai.guardrails.max_tokens
        )

        def generate(example: Example) -> str:
            message = rails.prompt(render(prompt, example.inputs))
            turn = [{"role": "user", "content": message}]
            answer = self.model(tenant, prompt.lineage.model, turn, rails.max_tokens)
            return rails.completion(content_of(answer))[0]

        verdict = evaluate(
            examples,
            generate,
            self._scorers(tenant, genai),
            {str(name): value for name, value in genai.evaluation.thresholds.items()},
            min_examples=genai.evaluation.min_examples,
        )
        if verdict.passed:
            store.set_alias(name, ALIAS_CHALLENGER, version)
        return verdict

    def _scorers(self, tenant: str, genai: GenAISpec) -> dict[str, Scorer]:
        scorers: dict[str, Scorer] = {
            name: make()
            for name, make in DETERMINISTIC.items()
            if name in genai.evaluation.thresholds
        }
        judge = genai.evaluation.judge_deployment
        if "judge" in genai.evaluation.thresholds and judge is not None:

            def ask(prompt: str) -> str:
                answer = self.model(
                    tenant, judge, [{"role": "user", "content": prompt}], JUDGE_MAX_TOKENS
                )
                return content_of(answer)

            scorers["judge"] = JudgeScorer(ask)
        return scorers
