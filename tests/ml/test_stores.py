"""New sqlite stores are copies of one migrated empty store; existing stores are untouched."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from ml.stores import prepare_sqlite_store


def test_a_new_store_is_migrated_and_opens_with_its_own_artifact_root(tmp_path: Path) -> None:
    first = prepare_sqlite_store(tmp_path / "registries" / "tenant-a.db")
    second = prepare_sqlite_store(tmp_path / "registries" / "tenant-b.db")
    templates = list((tmp_path / "registries").glob(".empty-mlflow-*"))
    assert len(templates) == 1  # migrated once, copied for the second store
    for path in (first, second):
        client = MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")
        client.create_registered_model(f"{path.stem}-model")
        default = client.get_experiment("0")
        # Created by this store's first opener, never the template's folder.
        assert str(tmp_path / "registries") not in default.artifact_location
        assert [m.name for m in client.search_registered_models()] == [f"{path.stem}-model"]


def test_an_existing_store_is_left_as_it_is(tmp_path: Path) -> None:
    path = prepare_sqlite_store(tmp_path / "tenant-a.db")
    client = MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")
    client.create_registered_model("kept")
    assert prepare_sqlite_store(path) == path
    assert [m.name for m in client.search_registered_models()] == ["kept"]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["tenant-a.db"]
