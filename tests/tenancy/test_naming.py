from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from tenancy import naming
from tenancy.spec import Environment
from tenancy.validators import endpoint_name_problem

LONG_SCOPE = "tenant-" + "a" * 24


@pytest.mark.parametrize("env", list(Environment))
@pytest.mark.parametrize("scope", ["platform", "tenant-contoso", LONG_SCOPE])
def test_globally_unique_names_follow_azure_rules(env: Environment, scope: str) -> None:
    storage = naming.storage_account("tmlops", env, scope, "ab12")
    assert re.fullmatch(r"[a-z0-9]{3,24}", storage), storage
    registry = naming.container_registry("tmlops", env, scope, "ab12")
    assert re.fullmatch(r"[A-Za-z0-9]{5,50}", registry), registry
    vault = naming.key_vault("tmlops", env, scope, "ab12cd34")
    assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9]*(-[a-zA-Z0-9]+)*", vault) and len(vault) <= 24, vault
    assert len(naming.workspace(env, scope)) <= 33


def test_names_are_deterministic_and_distinct_per_environment() -> None:
    dev = naming.storage_account("tmlops", Environment.DEV, "tenant-contoso", "ab12")
    assert dev == naming.storage_account("tmlops", Environment.DEV, "tenant-contoso", "ab12")
    assert dev != naming.storage_account("tmlops", Environment.PROD, "tenant-contoso", "ab12")


GLOBALLY_UNIQUE: dict[str, Callable[[str], str]] = {
    "storage": lambda i: naming.storage_account("tmlops", Environment.PROD, "platform", i),
    "registry": lambda i: naming.container_registry("tmlops", Environment.PROD, "platform", i),
    "vault": lambda i: naming.key_vault("tmlops", Environment.PROD, "platform", i),
    "ml registry": lambda i: naming.ml_registry("tmlops", Environment.PROD, i),
    "function app": lambda i: naming.function_app("tmlops", Environment.PROD, i),
    "api management": lambda i: naming.api_management("tmlops", Environment.PROD, i),
    "online endpoint": lambda i: naming.online_endpoint("tmlops", Environment.PROD, "contoso", i),
    "batch endpoint": lambda i: naming.batch_endpoint("tmlops", Environment.PROD, "contoso", i),
}


@pytest.mark.parametrize("kind", sorted(GLOBALLY_UNIQUE))
def test_two_installations_with_the_default_prefix_get_different_names(kind: str) -> None:
    """W14: the names Azure wants unique across all customers (or per region, for endpoint
    host names) differ between two installations of the same spec but for its id."""
    name = GLOBALLY_UNIQUE[kind]
    assert name("ab12") != name("cd34")
    assert name("ab12") == name("ab12")


def test_bounded_names_keep_distinct_long_inputs_apart() -> None:
    first = naming.bounded("x" * 40 + "-one", 33)
    second = naming.bounded("x" * 40 + "-two", 33)
    assert len(first) == len(second) == 33
    assert first != second


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("abc", True),
        ("tmlops-contoso-prd", True),
        ("a" * 32, True),
        ("ab", False),
        ("a" * 33, False),
        ("1abc", False),
        ("abc-", False),
        ("ab--c", False),
        ("ab_c", False),
    ],
)
def test_endpoint_name_rule(name: str, valid: bool) -> None:
    assert (endpoint_name_problem(name) is None) is valid
