"""The automation's Function App (Flex Consumption, Linux) and its code package."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
from pulumi_azure_native import web

from infra.common import DeployerWrite, grant_deployer_write, send_diagnostics
from infra.deploy_time import FunctionPackageInputs, PackageUpload
from infra.package import digest_of
from infra.shared import SharedServices
from tenancy import contracts, naming
from tenancy.spec import PlatformSpec

#: Flex Consumption loads the app from this blob in its deployment container.
PACKAGE_BLOB = "released-package.zip"
PYTHON_VERSION = "3.11"
#: Where the Functions host takes Event Grid deliveries (guarded by the system key).
EVENT_GRID_WEBHOOK_PATH = "/runtime/webhooks/eventgrid"


@dataclass
class AutomationArgs:
    spec: PlatformSpec
    stack: str
    shared: SharedServices
    subscription_id: pulumi.Input[str]
    # Who runs `pulumi up` (azure-native's client config): it uploads the code package.
    deployer_object_id: pulumi.Input[str]
    # The Entra tenant whose tokens App Service authentication accepts.
    entra_tenant_id: pulumi.Input[str]
    # The zip `make package` wrote (infra/package.py); None: the app is created without code.
    package: Path | None = None


class Automation(pulumi.ComponentResource):
    """Plan, Function App with the shared user-assigned identity, identity-based storage
    (no account keys anywhere), app settings, and the code package."""

    def __init__(
        self, name: str, args: AutomationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenant-mlops:automation:Automation", name, {"stamp": "platform"}, opts)
        self._name = name
        self._args = args
        self.package_upload: PackageUpload | None = None
        self.package_digest = self._create_package()
        self.plan = self._create_plan()
        self.function_app = self._create_function_app()
        self.authentication = self._create_authentication()
        send_diagnostics(
            f"{name}-func-diag",
            resource_id=self.function_app.id,
            workspace_id=args.shared.log_analytics.id,
            parent=self.function_app,
        )
        self.default_host_name = self.function_app.default_host_name
        self.register_outputs(
            {
                "functionAppId": self.function_app.id,
                "defaultHostName": self.function_app.default_host_name,
                "packageDigest": self.package_digest,
                "authenticationId": self.authentication.id,
            }
        )

    def function_id(self, function_name: str) -> pulumi.Output[str]:
        """Resource id of one function, as Event Grid's AzureFunction destination wants it."""
        return pulumi.Output.concat(self.function_app.id, "/functions/", function_name)

    def _create_package(self) -> str:
        """The package `make package` wrote, uploaded with the deployer's Entra credential
        (shared keys are off on the account, so azure-native's key-based ``storage.Blob``
        cannot, D1) once the deployer may write the package container. Its digest is the
        zip's sha256: the same zip is not uploaded twice."""
        package = self._args.package
        shared = self._args.shared
        if package is None:
            pulumi.log.warn(
                "no Function App package (run `make package`): the app is created without code",
                resource=self,
            )
            return ""
        digest = digest_of(package)
        spec = self._args.spec
        write = DeployerWrite(
            shared.storage.id,
            contracts.CONTAINER_FUNCTION_PACKAGE,
            self._args.deployer_object_id,
            self._args.subscription_id,
            f"{spec.prefix}/{spec.environment.value}/platform/package",
            "the deployer uploads the Functions package",
        )
        deployer_can_write = grant_deployer_write(
            f"{self._name}-deployer-package", write, parent=self
        )
        self.package_upload = PackageUpload(
            f"{self._name}-package",
            FunctionPackageInputs(
                account_name=shared.storage.name,
                blob_endpoint=shared.storage.primary_endpoints.blob,
                container_name=contracts.CONTAINER_FUNCTION_PACKAGE,
                blob_name=PACKAGE_BLOB,
                package_path=str(package.resolve()),
                digest=digest,
                uploader_object_id=self._args.deployer_object_id,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[deployer_can_write]),
        )
        return digest

    def _create_authentication(self) -> web.WebAppAuthSettingsV2:
        """App Service authentication (Entra) in front of every HTTP function (W2).

        - The module validates each caller's token and writes ``x-ms-client-principal``. While
          it runs, callers cannot set that header themselves
          (https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
          The app trusts the header only when ``WEBSITE_AUTH_ENABLED`` says so.
        - One Entra application serves two kinds of caller: approvers (users in the personas'
          groups) and the alert action group (secure webhook). Tokens must be for that
          application (allowed audiences). Which caller may use which route is checked by the
          app (functions/blueprints/identity.py).
        - Event Grid delivers to ``/runtime/webhooks/eventgrid`` with the host's system key,
          not an Entra token
          (https://learn.microsoft.com/azure/azure-functions/functions-bindings-event-grid-trigger).
          That path is excluded, so the key still guards it and deliveries are not refused.
        - The app is an API, not a website, so unauthenticated calls get 401 instead of a
          sign-in redirect. No token store is kept, so no secret is needed.
        """
        spec = self._args.spec
        app_id = spec.function_app.alert_webhook_app_id
        return web.WebAppAuthSettingsV2(
            f"{self._name}-auth",
            name=self.function_app.name,
            resource_group_name=self._args.shared.resource_group.name,
            platform={"enabled": True, "runtime_version": "~1"},
            global_validation={
                "require_authentication": True,
                "unauthenticated_client_action": web.UnauthenticatedClientActionV2.RETURN401,
                "excluded_paths": [EVENT_GRID_WEBHOOK_PATH],
            },
            identity_providers={
                "azure_active_directory": {
                    "enabled": True,
                    "registration": {
                        "client_id": app_id,
                        "open_id_issuer": pulumi.Output.concat(
                            "https://login.microsoftonline.com/",
                            self._args.entra_tenant_id,
                            "/v2.0",
                        ),
                    },
                    "validation": {"allowed_audiences": contracts.entra_audiences(app_id)},
                }
            },
            login={"token_store": {"enabled": False}},
            http_settings={"require_https": True},
            opts=pulumi.ResourceOptions(parent=self.function_app),
        )

    def _create_plan(self) -> web.AppServicePlan:
        spec = self._args.spec
        return web.AppServicePlan(
            f"{self._name}-plan",
            resource_group_name=self._args.shared.resource_group.name,
            name=f"plan-{spec.prefix}-{spec.environment.value}",
            location=spec.location,
            kind="functionapp",
            reserved=True,  # Linux
            sku={"name": "FC1", "tier": "FlexConsumption"},
            tags=self._args.shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _app_settings(self) -> list[dict[str, pulumi.Input[str]]]:
        args = self._args
        shared = args.shared
        identity = shared.automation_identity
        settings: dict[str, pulumi.Input[str]] = {
            # Host storage through the managed identity: no connection string, no key.
            "AzureWebJobsStorage__accountName": shared.storage.name,
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": identity.client_id,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": shared.app_insights.connection_string,
            # App Insights has local auth off: telemetry authenticates with the identity.
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": pulumi.Output.concat(
                "ClientId=", identity.client_id, ";Authorization=AAD"
            ),
            contracts.SETTING_IDENTITY_CLIENT_ID: identity.client_id,
            contracts.SETTING_STACK: args.stack,
            contracts.SETTING_SUBSCRIPTION: args.subscription_id,
            contracts.SETTING_STORAGE_ACCOUNT: shared.storage.name,
            # The workspace GUID Log Analytics queries take (not the resource id).
            contracts.SETTING_LOGS_WORKSPACE: shared.log_analytics.customer_id,
            # The spec holds no secret (group ids, thresholds, names), so it travels as a
            # setting and the automation reads the same document the program did.
            contracts.SETTING_PLATFORM_SPEC: json.dumps(args.spec.model_dump(mode="json")),
            # Timer schedules (%NAME% in the triggers) follow the stack's policies.
            contracts.SETTING_ROLLOUT_SCHEDULE: args.spec.rollout_tick_schedule(),
            contracts.SETTING_DRIFT_SCHEDULE: args.spec.drift.schedule,
            contracts.SETTING_AUDIT_SCHEDULE: args.spec.audit.schedule,
            contracts.SETTING_QUALITY_SCHEDULE: args.spec.quality.schedule,
        }
        return [{"name": key, "value": value} for key, value in settings.items()]

    def _create_function_app(self) -> web.WebApp:
        spec = self._args.spec
        shared = self._args.shared
        identity_id = shared.automation_identity.id
        network = shared.network
        return web.WebApp(
            f"{self._name}-func",
            resource_group_name=shared.resource_group.name,
            name=naming.function_app(spec.prefix, spec.environment, spec.installation),
            location=spec.location,
            kind="functionapp,linux",
            server_farm_id=self.plan.id,
            https_only=True,
            identity={"type": "UserAssigned", "user_assigned_identities": [identity_id]},
            key_vault_reference_identity=identity_id,
            virtual_network_subnet_id=network.functions_subnet.id if network else None,
            site_config={
                "app_settings": self._app_settings(),
                "min_tls_version": "1.2",
                "ftps_state": "Disabled",
                "http20_enabled": True,
            },
            function_app_config={
                "deployment": {
                    "storage": {
                        "type": "blobContainer",
                        "value": pulumi.Output.concat(
                            shared.storage.primary_endpoints.blob,
                            contracts.CONTAINER_FUNCTION_PACKAGE,
                        ),
                        "authentication": {
                            "type": "UserAssignedIdentity",
                            "user_assigned_identity_resource_id": identity_id,
                        },
                    }
                },
                "runtime": {"name": "python", "version": PYTHON_VERSION},
                "scale_and_concurrency": {
                    "maximum_instance_count": spec.function_app.maximum_instance_count,
                    "instance_memory_mb": spec.function_app.instance_memory_mb,
                },
            },
            tags=shared.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
