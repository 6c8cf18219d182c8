#!/usr/bin/env bash
# The Pulumi CLI at the version the workflow pins (PULUMI_VERSION), then the stack state
# backend (PULUMI_BACKEND_URL, an azblob:// container read with the Azure sign-in).
set -euo pipefail
: "${PULUMI_VERSION:?}"
: "${PULUMI_BACKEND_URL:?set the PULUMI_BACKEND_URL variable (azblob://<container>?storage_account=<name>)}"
curl -fsSL https://get.pulumi.com | sh -s -- --version "$PULUMI_VERSION"
echo "$HOME/.pulumi/bin" >> "$GITHUB_PATH"
"$HOME/.pulumi/bin/pulumi" login "$PULUMI_BACKEND_URL"
