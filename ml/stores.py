"""New MLflow sqlite stores, made by copying one empty store migrated once per folder.

MLflow brings a new sqlite store up to date by running every schema migration in order
(about 2 s of CPU each time). A platform has several stores (one per dedicated tenant, per
pool, and the platform's) created side by side, so the first is migrated and the others are
copies of it. A store that exists is never touched: MLflow checks and upgrades it itself.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path
from tempfile import NamedTemporaryFile


def _template(folder: Path) -> Path:
    from mlflow.version import VERSION  # noqa: PLC0415 - tiny module, the version is the key

    # Named by MLflow's version: a newer MLflow migrates to a schema of its own.
    return folder / f".empty-mlflow-{VERSION}.sqlite"


def _migrate_empty(template: Path) -> None:
    """Migrate a fresh store, then put it in place in one rename (a concurrent maker of the
    same template loses nothing: both files are the same empty store)."""
    # MLflow loads slowly: only a folder without its template pays for the import.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: PLC0415

    with NamedTemporaryFile(dir=template.parent, suffix=".partial", delete=False) as scratch:
        partial = Path(scratch.name)
    try:
        store = SqlAlchemyStore(f"sqlite:///{partial}", str(template.parent))  # type: ignore[no-untyped-call]
        store.engine.dispose()
        # Without its Default experiment: whoever opens a copy first (a tracking server,
        # a client) creates it with that store's own artifact root, as for a new store.
        with contextlib.closing(sqlite3.connect(partial)) as db, db:
            db.execute("DELETE FROM experiments")
        partial.replace(template)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def prepare_sqlite_store(path: Path) -> Path:
    """``path`` as an MLflow store: left as it is if it exists, else an empty migrated one."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    template = _template(path.parent)
    if not template.exists():
        _migrate_empty(template)
    with NamedTemporaryFile(dir=path.parent, suffix=".partial", delete=False) as scratch:
        copy = Path(scratch.name)
    shutil.copyfile(template, copy)
    copy.replace(path)
    return path
