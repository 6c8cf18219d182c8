"""The example stacks and the deliberately broken fixture stack, judged by the pack's rules
as `mlops plan` judges them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from infra.offline import OfflineRun
from mlops.cli import main
from policies.catalogue import RULES
from policies.config import PackConfig
from policies.offline import evaluate
from tenancy import PlatformSpec
from tests.conftest import STACKS

BROKEN = Path(__file__).parent / "fixtures" / "broken"

#: The resource each sabotage in fixtures/broken/program/__main__.py breaks.
BROKEN_AT = {
    "workspace-public-network-disabled": "tenant-contoso-ws",
    "workspace-user-assigned-identity": "tenant-adatum-ws",
    "workspace-customer-managed-key": "tenant-adatum-ws",
    "workspace-managed-network": "pool-shared-ws",
    "compute-local-auth-disabled": "tenant-contoso-gpu",
    "compute-scales-to-zero": "tenant-adatum-gpu",
    "compute-max-nodes-within-tier": "pool-shared-gpu",
    "compute-vm-size-allowed": "pool-shared-gpu",
    "compute-instance-idle-shutdown": "tenant-contoso-notebook",
    "compute-no-node-public-ip": "tenant-adatum-gpu",
    "endpoint-auth-mode": "tenant-adatum-batch",
    "endpoint-public-network-disabled": "tenant-contoso-online",
    "deployment-egress-disabled": "tenant-adatum-online-blue",
    "deployment-request-settings": "pool-shared-online-blue",
    "deployment-probes": "tenant-contoso-online-blue",
    "deployment-min-instances": "pool-shared-online-blue",
    "endpoint-traffic-valid": "tenant-adatum-online",
    "endpoint-mirror-traffic": "tenant-adatum-online",
    "deployment-data-collection": "tenant-adatum-online-blue",
    "event-subscription-dead-letter": "pool-shared-events-run-status",
    "storage-no-public-blob": "tenant-adatum-st",
    "registry-admin-disabled": "pool-shared-acr",
    "ml-no-preview-api": "tenant-contoso-preview-datastore",
    "canary-steps": "automation-func",
    "mandatory-tags": "tenant-contoso-st",
    "tenant-isolation": "tenant-contoso-notebook",
    "tenant-budgets": "pool-shared-budget",
    "time-bound-inputs": "tenant-adatum-budget",
    "creation-order": "tenant-adatum-online",
    "authentication-coherence": "tenant-contoso-key-blob",
    "network-prerequisites": "platform-network-snet-gateway",
    "identity-permissions": "tenant-contoso-ws",
    "workspace-diagnostics": "tenant-contoso-ws",
    "ai-account-local-auth-disabled": "tenant-contoso-genai-account",
    "ai-account-public-network-disabled": "tenant-contoso-genai-account",
    "ai-deployment-content-filter": "tenant-contoso-genai-contoso-chat",
    "genai-token-limit": "genai-gateway-contoso-product-policy",
    "azure-limits": "tenant-contoso-online",
}


@pytest.mark.parametrize("stack", STACKS)
def test_example_stacks_have_no_mandatory_violation(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun], stack: str
) -> None:
    violations = evaluate(planned[stack], PackConfig.from_spec(specs[stack]))
    assert [v for v in violations if v.level == "mandatory"] == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_example_stack_is_clean_even_of_advisories(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun], stack: str
) -> None:
    assert evaluate(planned[stack], PackConfig.from_spec(specs[stack])) == []


def test_public_stacks_waive_the_prod_rules_they_break_in_their_spec(
    specs: dict[str, PlatformSpec], planned: dict[str, OfflineRun]
) -> None:
    """local, dev and staging are public and run one instance: they say so in their spec,
    and without that waiver the pack tells them what prod would refuse."""
    for stack in ("local", "dev", "staging"):
        spec = specs[stack]
        assert set(spec.policies) == {
            "workspace-public-network-disabled",
            "deployment-min-instances",
        }
        unwaived = spec.model_copy(update={"policies": {}})
        violations = evaluate(planned[stack], PackConfig.from_spec(unwaived))
        assert {(v.policy, v.level) for v in violations} == {
            ("workspace-public-network-disabled", "advisory"),
            ("deployment-min-instances", "advisory"),
        }


def test_the_broken_stack_fails_the_plan_and_reports_each_rule_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Planned as `mlops plan --root <fixture> --stack broken --json` plans it."""
    code = main(["plan", "--root", str(BROKEN), "--stack", "broken", "--json"])
    assert code == 1
    violations = json.loads(capsys.readouterr().out)["violations"]
    counts = Counter(v["policy"] for v in violations)
    assert counts == {rule.name: 1 for rule in RULES}
    for violation in violations:
        assert set(violation) == {"policy", "level", "urn", "message"}
        name = violation["urn"].rsplit("::", 1)[-1]
        assert name == BROKEN_AT[violation["policy"]], violation
        expected = (
            "advisory" if violation["policy"] == "deployment-data-collection" else "mandatory"
        )
        assert violation["level"] == expected
        assert violation["message"]
