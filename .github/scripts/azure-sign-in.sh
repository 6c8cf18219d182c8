#!/usr/bin/env bash
# Sign in to Azure with the job's GitHub OIDC token, exchanged by Entra through the
# pipeline identity's federated credential: no client secret exists anywhere.
# https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust
# https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect
set -euo pipefail
: "${ARM_CLIENT_ID:?set the AZURE_CLIENT_ID variable of the repository or environment}"
: "${ARM_TENANT_ID:?set the AZURE_TENANT_ID variable}"
: "${ARM_SUBSCRIPTION_ID:?set the AZURE_SUBSCRIPTION_ID variable}"
: "${ACTIONS_ID_TOKEN_REQUEST_URL:?the job needs permissions: id-token: write}"
token=$(curl -sSf -H "Authorization: bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}" \
  "${ACTIONS_ID_TOKEN_REQUEST_URL}&audience=api://AzureADTokenExchange" | jq -r .value)
echo "::add-mask::${token}"
az login --service-principal --username "$ARM_CLIENT_ID" --tenant "$ARM_TENANT_ID" \
  --federated-token "$token" --output none
az account set --subscription "$ARM_SUBSCRIPTION_ID"
