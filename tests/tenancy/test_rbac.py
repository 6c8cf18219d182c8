"""The persona matrix is the MLOps v2 guidance's, and its grants come out as stated."""

from __future__ import annotations

from tenancy.rbac import (
    PLATFORM_PERSONAS,
    PRE_PRODUCTION,
    PRODUCTION,
    PROJECT_PERSONAS,
    ROLE_IDS,
    grants,
)


def test_tables_cover_every_persona_and_column() -> None:
    for table in (PRODUCTION, PRE_PRODUCTION):
        assert set(table) == set(PROJECT_PERSONAS) | set(PLATFORM_PERSONAS) | {"aml_workspace"}
        assert all(len(row) == 8 for row in table.values())


def test_data_scientists_build_in_pre_production_and_only_read_in_production() -> None:
    pre = {(g.column, g.role_code) for g in grants("pre_production", ("data_scientist",))}
    prod = {(g.column, g.role_code) for g in grants("production", ("data_scientist",))}
    assert ("aml_workspace", "ADS") in pre
    assert ("key_vault", "KVA") in pre
    assert not any(column == "aml_workspace" for column, _ in prod)
    assert prod == {("container_registry", "R"), ("log_analytics", "LAR"), ("azure_monitor", "MR")}


def test_devops_columns_are_not_azure_role_assignments() -> None:
    for table in ("production", "pre_production"):
        codes = {g.role_code for g in grants(table, PLATFORM_PERSONAS)}  # type: ignore[arg-type]
        assert codes <= set(ROLE_IDS)
        assert not {g.column for g in grants(table, PLATFORM_PERSONAS)} & {
            "azure_devops",
            "azure_artifacts",
        }  # type: ignore[arg-type]


def test_platform_support_and_cicd_are_just_in_time_in_production_only() -> None:
    prod = grants("production", ("platform_support", "cicd"))
    assert prod and all(g.just_in_time for g in prod)
    pre = grants("pre_production", ("cicd",))
    assert pre and not any(g.just_in_time for g in pre)


def test_workspace_identity_gets_what_a_workspace_needs() -> None:
    pre = {(g.column, g.role_code) for g in grants("pre_production", ("aml_workspace",))}
    assert pre == {
        ("key_vault", "R"),
        ("key_vault", "KVR"),
        ("container_registry", "C"),
        ("storage_account", "C"),
    }
