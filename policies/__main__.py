"""The policy pack: `pulumi preview --policy-pack policies --policy-pack-config
policies/config/<stack>.json`. Constructing the PolicyPack starts the analyzer server, so
tests never import this file; they test the rules and `policies.pack` directly."""

import sys
from pathlib import Path

# The engine runs this file from the pack's folder; the project root holds the packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.pack import PACK_NAME, build_policies

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=build_policies(),
)
