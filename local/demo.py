"""`mlops demo`: the platform's story, played on the running platform through its real doors,
with a timeline of what happened and when.

1. Every tenant scores through the gateway with its own key.
2. contoso's clients send labels for what they scored: the quality check (the timer
   function, run now through the Functions host's admin API) measures the live model's
   accuracy on them. Then the world shifts (its clients send shifted features, and their
   labels): quality falls below the model's evaluation, an alert goes out and retraining is
   asked for (the drift check, run next, finds it already decided today); the retrained
   version is registered, the MLflow webhook reaches the automation, the gate passes it, a
   canary shifts contoso's traffic step by step while contoso keeps scoring and labelling
   (green's accuracy judged against blue's too), the new version is promoted, and the
   registry's champion alias follows it.
3. adatum gets a broken version: exported for an ONNX opset the serving runtime does not
   know. The registry checks pass it (they read lineage, metrics and the file's digest, not
   the graph); the new deployment cannot load it, and the rollout rolls back on its own:
   adatum keeps being served by its champion.
4. contoso withdraws its consent to shared training: the shared classical model is
   retrained from the tenants that still consent, and rolled out to the tenants that serve
   it (fabrikam, in the pool) while the pool keeps scoring.
5. An operator wires a server into adatum's endpoint by hand: the policy audit (the timer
   function, run now) finds a deployment without probes; removed, the finding clears.
6. Generative AI: contoso publishes prompt versions. The first passes the gate and goes
   live; one that answers beside the question is rejected with its evidence; a terser one
   passes, is canaried on contoso's callers (sticky per caller, judged on a sample of live
   answers, tokens and cost counted) and promoted. fabrikam spends its monthly token budget
   and is refused before the model is called.

The demo changes nothing it does not announce, and each step waits for the automation with
a deadline: a step that does not happen in time is reported as failed, not waited for
forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from automation.drift_watch import DRIFT_EVENTS, tenant_and_model
from genai.prompts import PromptLineage
from local.operations import PlatformClient
from ml.data import tenant_datasets
from ml.evaluate import compare
from ml.export import ExportedModel, export
from ml.lifecycle import baseline_of, owner_contact_of
from ml.registry import registry_of
from ml.retrain import retrain_shared
from ml.training import train_tenant_specific
from tenancy import contracts
from tenancy.spec import PlatformSpec

DRIFT_TENANT, BROKEN_TENANT, WITHDRAWING_TENANT = "contoso", "adatum", "contoso"
AUDIT_TENANT, HAND_WIRED = "adatum", "hand-wired"
NORMAL_REQUESTS = 100
LABELS_PER_CALL = 10
DRIFT_REQUESTS = 300
DRIFT_PACE = 1 / 60  # seconds between requests: contoso may send 100 a second
STEP_TIMEOUT = 300.0
QUALITY_WAIT = 60.0  # seconds the quality check may take to see every labelled row
UNKNOWN_OPSET = 99
PROMPT_TENANT, BUDGET_TENANT, PROMPT_NAME = "contoso", "fabrikam", "capitals"
PROMPT_COUNTRIES = ["France", "Germany", "Italy", "Spain", "Portugal", "Japan"]
PROMPT_BURST = 12  # requests between two looks at the rollout


@dataclass
class Timeline:
    say: Callable[[str], Any]
    started: float = field(default_factory=time.monotonic)
    entries: list[tuple[float, str]] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        at = time.monotonic() - self.started
        self.entries.append((at, text))
        self.say(f"[{at:6.1f}s] {text}")


class Load:
    """Tenants' clients scoring in the background while rollouts need traffic to judge;
    those given ``labelled`` rows score them and send each one's label."""

    def __init__(
        self,
        client: PlatformClient,
        tenants: list[str],
        per_second: float,
        *,
        labelled: dict[str, tuple[list[list[float]], list[int]]] | None = None,
    ) -> None:
        self.client, self.tenants, self.pause = client, tenants, 1.0 / per_second
        self.labelled = labelled or {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        sent = 0
        pending: dict[str, list[tuple[str, Any]]] = {t: [] for t in self.labelled}
        while not self._stop.is_set():
            for tenant in self.tenants:
                if tenant not in self.labelled:
                    self.client.score(tenant)
                    continue
                rows, labels = self.labelled[tenant]
                row, label = rows[sent % len(rows)], labels[sent % len(rows)]
                scored = self.client.score(tenant, {"data": [row]})
                if scored.status == 200:
                    pending[tenant].append((scored.request_id, label))
                if len(pending[tenant]) >= LABELS_PER_CALL:  # as a client batches its labels
                    self.client.feedback(tenant, pending[tenant])
                    pending[tenant] = []
            sent += 1
            self._stop.wait(self.pause)  # a steady client, not a timing measurement


class Demo:
    def __init__(self, client: PlatformClient, say: Callable[[str], Any] = print) -> None:
        self.client = client
        self.spec = client.spec
        self.log = Timeline(say)
        self.scratch = client.data_dir / "scratch" / "demo"
        self.shown: set[str] = set()  # notifications already on the timeline
        self.labelled: dict[str, int] = {}  # labels sent per tenant

    def run(self) -> bool:
        steps = (
            self.tenants_score,
            self.drift_to_promotion,
            self.broken_model,
            self.consent,
            self.policy_audit,
            self.prompts_and_tokens,
        )
        ok = True
        for step in steps:
            try:
                ok = step() and ok
            except Exception as error:  # one failed step is reported; the others still run
                self.log(f"FAILED {step.__name__}: {error}")
                ok = False
        self.log("demo " + ("complete" if ok else "finished with failures"))
        return ok

    # --- 1 ---------------------------------------------------------------------------------

    def tenants_score(self) -> bool:
        ok = True
        for tenant in self.client.state["tenants"]:
            scored = self.client.score(tenant["id"])
            predictions = scored.body.get("predictions") if isinstance(scored.body, dict) else None
            self.log(
                f"{tenant['id']} scores through {tenant['endpoint']}: HTTP {scored.status}, "
                f"deployment {scored.deployment or '-'}, predictions {predictions}"
            )
            ok = ok and scored.status == 200
        return ok

    # --- 2 ---------------------------------------------------------------------------------

    def drift_to_promotion(self) -> bool:
        tenant = DRIFT_TENANT
        champion = self._champion(tenant)
        rows, labels = self._labelled_rows(tenant)
        self._score_and_label(tenant, rows[:NORMAL_REQUESTS], labels[:NORMAL_REQUESTS])
        self.log(f"{tenant}'s clients score {NORMAL_REQUESTS} requests and send their labels")
        before = self._quality(tenant)
        shifted = self._shifted(tenant, rows[NORMAL_REQUESTS:])
        statuses = self._score_and_label(tenant, shifted, labels[NORMAL_REQUESTS:])
        self.log(
            f"the world shifts: {tenant}'s clients send {len(shifted)} requests with shifted "
            f"features (answers by status: {statuses}), and their labels"
        )
        after = self._quality(tenant)
        self.client.run_function("drift_check")  # the same day: already decided
        decision = self._drift_decision(tenant, champion)
        if decision is None or before is None or after is None:
            self.log(f"no quality or drift decision for {tenant}")
            return False
        self.log(f"decision: {decision['reason']}")
        for note in self._new_notifications(tenant, champion):
            self.log(f"alert to {tenant}: [{note['severity']}] {note['message']}")
        self.log(f"retraining of {tenant} requested (a local training job)")
        labelled = (shifted, labels[NORMAL_REQUESTS:])
        with Load(self.client, [tenant], per_second=25, labelled={tenant: labelled}):
            promoted = self._follow_rollout(tenant, champion, expect="promoted")
        crowned = self._crowned_once_applied(tenant, champion)
        self.log(f"the registry's champion alias of {tenant} now names {crowned}")
        return promoted and crowned == self._champion(tenant)

    def _labelled_rows(self, tenant: str) -> tuple[list[list[float]], list[int]]:
        """Rows of the tenant's own data the model did not train on, with their labels."""
        _, holdout = tenant_datasets(self.spec)[tenant].split()
        rng = np.random.default_rng(7)
        picked = rng.integers(0, len(holdout.X), NORMAL_REQUESTS + DRIFT_REQUESTS)
        rows = [[float(v) for v in holdout.X[i]] for i in picked]
        return rows, [int(holdout.y[i]) for i in picked]

    def _shifted(self, tenant: str, rows: list[list[float]]) -> list[list[float]]:
        """``rows`` with every feature moved by two of the training data's standard deviations."""
        _, columns, reference = self.client.adapter.baseline(
            tenant, self.client.adapter.endpoint(tenant).live
        )
        spread = reference[:, : len(columns)].astype(float).std(axis=0)
        return [[float(v) for v in np.asarray(row) + 2.0 * spread] for row in rows]

    def _score_and_label(
        self, tenant: str, rows: list[list[float]], labels: list[int]
    ) -> dict[int, int]:
        """Each row a request, as the tenant's clients send them; then the labels of those
        answered, in one feedback call. Answers by status."""
        statuses: dict[int, int] = {}
        answered = []
        for row, label in zip(rows, labels, strict=True):
            scored = self.client.score(tenant, {"data": [row]})
            statuses[scored.status] = statuses.get(scored.status, 0) + 1
            if scored.status == 200:
                answered.append((scored.request_id, label))
            time.sleep(DRIFT_PACE)  # within the tenant's rate limit, as its clients would be
        if answered:
            self.client.feedback(tenant, answered)
        self.labelled[tenant] = self.labelled.get(tenant, 0) + len(answered)
        return statuses

    def _quality(self, tenant: str) -> dict[str, Any] | None:
        """The quality check, run now, once the collector has written what was scored: run
        again until it measures every row labelled so far (a loaded machine flushes later
        than the collector's 2 s), within a deadline."""
        deadline = time.monotonic() + QUALITY_WAIT
        check = None
        while time.monotonic() < deadline:
            time.sleep(2)  # the collector flushes every 2 s: the rows must be in blob storage
            self.client.run_function("quality_check")
            check = self.client.quality().get(tenant)
            if check and check.get("labelled", 0) >= self.labelled.get(tenant, 0):
                break
        if not check or not check.get("measured"):
            return None
        measured, estimated = check["measured"], check.get("estimated") or {}
        self.log(
            f"quality check: accuracy {measured['accuracy']:.3f} measured on "
            f"{check['labelled']} labelled rows ({estimated.get('accuracy', float('nan')):.3f} "
            f"estimated from confidence): {'; '.join(check['breaches']) or 'healthy'}"
        )
        return check

    def _crowned_once_applied(self, tenant: str, champion: str) -> str:
        """The champion alias once the promotion's registry action is applied: the rollout
        reports "promoted" when its state is written, and the runner crowns the version
        right after (under load, a read straight away could still find the former one)."""
        deadline = time.monotonic() + QUALITY_WAIT
        crowned = self._crowned(tenant, champion)
        while crowned != self._champion(tenant) and time.monotonic() < deadline:
            time.sleep(0.5)
            crowned = self._crowned(tenant, champion)
        return crowned

    def _crowned(self, tenant: str, champion: str) -> str:
        name = champion.partition("/")[0]
        found = registry_of(self.client.adapter.layout, tenant, name).alias(
            name, contracts.ALIAS_CHAMPION
        )
        return f"{name}/{found.version}" if found is not None else "no version"

    def _drift_decision(self, tenant: str, model: str) -> dict[str, Any] | None:
        for event in self.client.events(DRIFT_EVENTS):
            if tenant_and_model(event["key"]) == (tenant, model):
                return event
        return None

    # --- 3 ---------------------------------------------------------------------------------

    def broken_model(self) -> bool:
        tenant = BROKEN_TENANT
        champion = self._champion(tenant)
        ref = register_broken_version(self.spec, self.client, tenant)
        self.log(
            f"{tenant}: {ref} registered, exported for ONNX opset {UNKNOWN_OPSET} (the serving "
            "runtime does not know it); lineage, metrics and digest are in order"
        )
        ok = self._follow_rollout(tenant, champion, expect="rolled_back", model=ref)
        scored = self.client.score(tenant)
        self.log(
            f"{tenant} still scores: HTTP {scored.status} from {scored.deployment} "
            f"({self._champion(tenant)})"
        )
        return ok and scored.status == 200 and self._champion(tenant) == champion

    # --- 4 ---------------------------------------------------------------------------------

    def consent(self) -> bool:
        withdrawn = self._without_consent(WITHDRAWING_TENANT)
        kind = self.spec.tenant(WITHDRAWING_TENANT).model_kind
        serving = [
            t.id for t in self.spec.tenants if t.model_strategy == "shared" and t.model_kind == kind
        ]
        if not serving:
            self.log(f"no tenant serves the shared {kind} model: nothing to retrain")
            return True
        champion = self._champion(serving[0])
        self.log(
            f"{WITHDRAWING_TENANT} withdraws its consent to shared training; the shared {kind} "
            f"model is retrained from the tenants that still consent"
        )
        registered = retrain_shared(withdrawn, kind, self.client.adapter.layout, self.scratch)
        excluded = WITHDRAWING_TENANT not in registered.contributors
        self.log(
            f"{registered.model.ref} registered, trained on {', '.join(registered.contributors)}"
            f" ({WITHDRAWING_TENANT} {'not ' if excluded else ''}among them)"
        )
        pool = [t.id for t in self.spec.tenants if t.tier == "pooled"]
        with Load(self.client, pool, per_second=10):
            ok = self._follow_rollout(
                serving[0], champion, expect="promoted", model=registered.model.ref
            )
        return ok and excluded

    # --- 5 ---------------------------------------------------------------------------------

    def policy_audit(self) -> bool:
        """An operator wires a server into adatum's endpoint by hand (its champion's, under
        another name): nothing probes it, and the policy audit finds it; once removed, the
        finding clears."""
        tenant = AUDIT_TENANT
        endpoint = self.client.adapter.endpoint_name(tenant)
        champion = self.client.adapter.endpoint(tenant).live
        url = self.client.admin.deployment(endpoint, champion)["url"]
        self.client.admin.put_deployment(endpoint, HAND_WIRED, url)
        self.log(f"an operator wires {url} into {endpoint} by hand, as '{HAND_WIRED}'")
        try:
            self.client.run_function("policy_audit")
            found = [
                f
                for f in self.client.findings()
                if f["resource"].endswith(f"/deployments/{HAND_WIRED}")
            ]
            for finding in found:
                self.log(
                    f"policy audit: {finding['policy']} ({finding['level']}) on "
                    f"{tenant}'s {HAND_WIRED}: {finding['message']}"
                )
        finally:
            self.client.admin.delete_deployment(endpoint, HAND_WIRED)
        self.client.run_function("policy_audit")
        still = [f for f in self.client.findings() if HAND_WIRED in f["resource"]]
        self.log(
            f"'{HAND_WIRED}' removed: the finding " + ("is still open" if still else "cleared")
        )
        return bool(found) and not still

    # --- 6 ---------------------------------------------------------------------------------

    def prompts_and_tokens(self) -> bool:
        name = self._prompt_name(PROMPT_TENANT)
        first = self._publish(name, "What is the capital of {{country}}?")
        rejected = self._publish(name, "Tell me everything about {{country}}.")
        terse = self._publish(name, "In one word: the capital of {{country}}?")
        promoted = terse and self._canary(name)
        spent = self._spend_budget(BUDGET_TENANT)
        return first and not rejected and terse and promoted and spent

    def _prompt_name(self, tenant: str) -> str:
        """A prompt of its own for each play of the demo (a replay starts from nothing)."""
        known = self.client.admin.genai_status()[tenant]["prompts"]
        return PROMPT_NAME if PROMPT_NAME not in known else f"{PROMPT_NAME}-{len(known) + 1}"

    def _publish(self, name: str, template: str) -> bool:
        lineage = PromptLineage("chat", "capitals-v1", {"temperature": 0})
        published = self.client.publish_prompt(PROMPT_TENANT, name, template, lineage)
        verdict, version = published["verdict"], published["version"]
        means = ", ".join(f"{k} {v:.2f}" for k, v in verdict["means"].items())
        ref = f"{PROMPT_TENANT}'s prompt {name}/{version}"
        if not verdict["passed"]:
            evidence = verdict["evidence"][0]
            self.log(
                f"{ref} rejected by the gate ({means}): e.g. {evidence['example']} answered "
                f"{evidence['answer']!r} ({evidence['scorer']} {evidence['score']:.2f})"
            )
            return False
        rollout = published["rollout"] or {}
        self.log(f"{ref} passed the gate ({means}): rollout {rollout.get('phase')}")
        return True

    def _canary(self, name: str) -> bool:
        """contoso's callers ask the prompt while the rollout runs; its steps are shown."""
        deadline = time.monotonic() + STEP_TIMEOUT
        shown = ""
        caller = 0
        while time.monotonic() < deadline:
            for _ in range(PROMPT_BURST):
                caller += 1
                country = PROMPT_COUNTRIES[caller % len(PROMPT_COUNTRIES)]
                body = {"prompt": name, "variables": {"country": country}, "user": f"c{caller}"}
                self.client.chat(PROMPT_TENANT, "chat", body)
            found = self.client.admin.genai_status()[PROMPT_TENANT]["prompts"][name]
            rollout = found["rollout"] or {}
            line = f"{rollout.get('phase')} {rollout.get('traffic')}"
            if line != shown:
                shown = line
                self.log(
                    f"{PROMPT_TENANT} prompt {name} rollout of {rollout.get('version')}: {line} "
                    f"({rollout.get('reason')})"
                )
            if rollout.get("phase") in ("promoted", "rolled_back"):
                self.log(
                    f"{PROMPT_TENANT}: prompt {name}/{rollout['version']} "
                    f"{rollout['phase'].replace('_', ' ')}; champion {found['champion']}"
                )
                return bool(rollout["phase"] == "promoted")
            time.sleep(1)  # the platform's timer advances the rollout; this only watches
        self.log(f"{PROMPT_TENANT}: the prompt rollout did not end within {STEP_TIMEOUT:g} s")
        return False

    def _spend_budget(self, tenant: str) -> bool:
        """Long requests until the monthly budget cannot take the next one's worst case."""
        question = "Please explain " + "the history of the region and its economy " * 12
        body = {"messages": [{"role": "user", "content": question}], "max_tokens": 200}
        for count in range(1, 200):
            answered = self.client.chat(tenant, "chat", body)
            if answered.status != 200:
                tokens = self.client.admin.genai_status()[tenant]["tokens"]
                self.log(
                    f"{tenant} hits its token budget at request {count}: HTTP {answered.status} "
                    f"{answered.body['error']['message']} ({tokens['month']} tokens spent)"
                )
                return answered.status == 403
        self.log(f"{tenant} never reached its token budget")
        return False

    def _without_consent(self, tenant: str) -> PlatformSpec:
        tenants = [
            t.model_copy(update={"shared_training_consent": False}) if t.id == tenant else t
            for t in self.spec.tenants
        ]
        return self.spec.model_copy(update={"tenants": tenants})

    # --- following the automation ----------------------------------------------------------

    def _champion(self, tenant: str) -> str:
        adapter = self.client.adapter
        endpoint = adapter.endpoint(tenant)
        return adapter.serving_model(tenant, endpoint.live) if endpoint.serving else ""

    def _follow_rollout(
        self, tenant: str, champion: str, *, expect: str, model: str | None = None
    ) -> bool:
        """Print the rollout's transitions until it ends (or the deadline passes)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        seen: set[str] = set()
        found = None
        while time.monotonic() < deadline:
            found = self._rollout_of(tenant, champion, model)
            if found is not None:
                for record in self.client.rollout(tenant, found["model"])["audit"]:
                    key = f"{record['at']}|{record['reason']}"
                    if key not in seen:
                        seen.add(key)
                        after = record.get("after") or {}
                        self.log(
                            f"{tenant} rollout of {found['model']}: {after.get('phase')} "
                            f"{after.get('traffic')} ({record['reason']})"
                        )
                if found["phase"] in ("promoted", "rolled_back", "rejected") or (
                    expect == "promoted" and found["phase"] == "draining"
                ):
                    break
            time.sleep(1)  # the automation ticks on its timer; this only watches
        if found is None:
            self.log(f"{tenant}: no rollout started within {STEP_TIMEOUT:g} s")
            return False
        if found["phase"] == "rejected":
            self.log(f"{tenant}: {found['model']} was rejected by the gate: {found['reason']}")
        for note in self._new_notifications(tenant, found["model"]):
            self.log(f"alert to {tenant}: [{note['severity']}] {note['message']}")
        outcome = "promoted" if found["phase"] in ("promoted", "draining") else found["phase"]
        self.log(f"{tenant}: {found['model']} {outcome.replace('_', ' ')}")
        return outcome == expect

    def _rollout_of(self, tenant: str, champion: str, model: str | None) -> Any:
        for entry in reversed(self.client.rollouts(tenant)):
            if (model and entry["model"] == model) or (
                not model and entry["model"] != champion and _newer(entry["model"], champion)
            ):
                return entry
        return None

    def _new_notifications(self, tenant: str, about: str) -> list[dict[str, Any]]:
        fresh = [
            n
            for n in self.client.notifications()
            if n["tenant"] == tenant and about in n["message"] and n["at"] not in self.shown
        ]
        self.shown |= {n["at"] for n in fresh}
        return fresh


def _newer(model: str, than: str) -> bool:
    name, _, version = model.partition("/")
    other, _, other_version = than.partition("/")
    return name == other and int(version) > int(other_version or 0)


def register_broken_version(spec: PlatformSpec, client: PlatformClient, tenant: str) -> str:
    """A version of ``tenant``'s model whose ONNX file names an opset no runtime knows: its
    metrics and baseline are the real model's, its digest the broken file's."""
    train, holdout = tenant_datasets(spec)[tenant].split()
    trained = train_tenant_specific(train)
    exported = export(trained, holdout.features())
    metrics = compare(
        trained.kind,
        exported.onnx_bytes,
        None,
        X=holdout.features(),
        y=holdout.y,
        classes=trained.classes,
    )
    graph = onnx.load_from_string(exported.onnx_bytes)
    for opset in graph.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = UNKNOWN_OPSET
    broken = ExportedModel(graph.SerializeToString(), exported.schema, exported.parity)
    registry = client.adapter.layout.registry_for(tenant)
    ref = registry.register(
        trained,
        broken,
        metrics,
        owner_contact=owner_contact_of(spec, tenant),
        baseline=baseline_of(trained, exported.onnx_bytes),
    )
    registry.set_alias(ref.name, contracts.ALIAS_CHALLENGER, ref.version)
    return ref.ref
