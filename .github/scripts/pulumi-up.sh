#!/usr/bin/env bash
# `pulumi up` of an environment: its stack (with placement.shard_stacks, the shared
# platform), then each of its shard stacks (Pulumi.<stack>.<target>.yaml, written by
# `mlops plan --write-placement`), each created on first use. A shard reads the shared
# stack's outputs, so it comes after; shards never read each other, and a failed one
# stops the rest. The policy pack runs with every update.
set -euo pipefail
stack="${1:?usage: pulumi-up.sh <stack>}"
root="${PROJECT_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}"
stacks=("$stack")
for file in "$root"/Pulumi."$stack".*.yaml; do
  [ -e "$file" ] || continue
  name="$(basename "$file" .yaml)"
  stacks+=("${name#Pulumi.}")
done
for name in "${stacks[@]}"; do
  echo "pulumi up: $name"
  pulumi stack select --create "$name" --non-interactive
  pulumi up --stack "$name" --policy-pack policies --yes --non-interactive
done
