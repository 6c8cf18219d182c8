"""The platform spec: one description of an environment, read by every part.

Imports neither Pulumi nor an Azure SDK, so the automation, the ML library, the policies and
the embedded platform can all depend on it.
"""

from tenancy.errors import ConfigError, ConfigIssue, MlopsError
from tenancy.load import PLATFORM_KEY, load_stack, parse_platform_spec, project_root
from tenancy.spec import Environment, PlatformSpec, PoolSpec, TenantSpec

__all__ = [
    "PLATFORM_KEY",
    "ConfigError",
    "ConfigIssue",
    "Environment",
    "MlopsError",
    "PlatformSpec",
    "PoolSpec",
    "TenantSpec",
    "load_stack",
    "parse_platform_spec",
    "project_root",
]
