"""The scoring contract in process: both request shapes, every input error, pooled models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml.data import TenantData
from ml.scoring import score as contract
from ml.training import train_tenant_specific

Splits = dict[str, tuple[TenantData, TenantData]]


@pytest.fixture(scope="module")
def single(model_dirs: dict[str, Path]) -> contract.ScoringService:
    return contract.ScoringService(model_dirs["single"])


def _rows(splits: Splits, tenant: str, n: int) -> list[list[Any]]:
    return splits[tenant][1].X[:n].tolist()


def test_scores_in_request_order_as_the_source_model_does(
    single: contract.ScoringService, local_splits: Splits
) -> None:
    train, holdout = local_splits["contoso"]
    status, body = contract.score(single, json.dumps({"data": holdout.X[:20].tolist()}))
    assert status == 200
    source = train_tenant_specific(train)
    assert body["predictions"] == source.predict(holdout.X[:20]).tolist()
    assert np.allclose(body["probabilities"], source.predict_proba(holdout.X[:20]), atol=1e-5)
    assert body["classes"] == [0, 1]


def test_the_columns_shape_is_reordered_to_the_model(
    single: contract.ScoringService, local_splits: Splits
) -> None:
    columns = single.single.schema.columns  # type: ignore[union-attr]
    rows = _rows(local_splits, "contoso", 3)
    reversed_body = {"input_data": {"columns": columns[::-1], "data": [row[::-1] for row in rows]}}
    assert contract.score(single, reversed_body) == contract.score(single, {"data": rows})


def _error(service: contract.ScoringService, raw: Any) -> tuple[int, str]:
    status, body = contract.score(service, raw)
    return status, body["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "the body is empty: send a JSON object"),
        (
            "{not json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes at 1",
        ),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        ("[1, 2]", "the body must be a JSON object with 'data' or 'input_data'"),
        ('{"rows": []}', "send exactly one of 'data' or 'input_data'"),
        ('{"data": [], "input_data": {}}', "send exactly one of 'data' or 'input_data'"),
        ('{"data": [1, 2]}', "'data' must be a list of rows, each a list of values"),
        ('{"data": []}', "no rows to score"),
        ('{"data": [[1, 2, 3]]}', "row 0 has 3 values, expected 30"),
        ('{"data": [[NaN' + ", 1" * 29 + "]]}", "NaN is not allowed: send finite numbers"),
        (
            '{"data": [[Infinity' + ", 1" * 29 + "]]}",
            "Infinity is not allowed: send finite numbers",
        ),
        (
            '{"data": [[1e400' + ", 1" * 29 + "]]}",
            "row 0, column 'mean_radius': value out of the float32 range",
        ),
        (
            '{"data": [[1e39' + ", 1" * 29 + "]]}",
            "row 0, column 'mean_radius': value out of the float32 range",
        ),
        (
            '{"data": [[true' + ", 1" * 29 + "]]}",
            "row 0, column 'mean_radius': expected a number, got bool",
        ),
        (
            '{"data": [[1, "2"' + ", 1" * 28 + "]]}",
            "row 0, column 'mean_texture': expected a number, got str",
        ),
        (
            '{"data": [[1, null' + ", 1" * 28 + "]]}",
            "row 0, column 'mean_texture': expected a number, got null",
        ),
        (
            '{"data": [[' + "1, " * 29 + "[1]]]}",
            "row 0, column 'worst_fractal_dimension': expected a number, got list",
        ),
        (
            '{"input_data": {"data": [[1]]}}',
            "'input_data' must be an object with 'columns' and 'data'",
        ),
        ("[" * 100_000 + "]" * 100_000, "the body is nested too deeply"),
    ],
)
def test_bad_input_is_a_400_that_names_the_problem(
    single: contract.ScoringService, raw: Any, message: str
) -> None:
    assert _error(single, raw) == (400, message)


def test_missing_and_unknown_columns_are_named(single: contract.ScoringService) -> None:
    columns = single.single.schema.columns  # type: ignore[union-attr]
    body = {"input_data": {"columns": [*columns[1:], "zip_code"], "data": [[1] * 30]}}
    assert _error(single, body) == (
        400,
        "missing column(s): mean_radius; unknown column(s): zip_code",
    )


def test_duplicate_columns_are_named(single: contract.ScoringService) -> None:
    body = {"input_data": {"columns": ["mean_radius", "mean_radius"], "data": [[1, 2]]}}
    assert _error(single, body)[1].startswith("duplicate column(s): mean_radius; missing column(s)")


def test_a_batch_above_the_limit_is_refused(single: contract.ScoringService) -> None:
    body = {"data": [[1.0] * 30] * 1001}
    assert _error(single, body) == (400, "1001 rows is above the batch limit of 1000")


def test_a_model_failure_is_a_500_without_internals(
    single: contract.ScoringService, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(inputs: np.ndarray) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(single.single, "predict", broken)
    status, body = contract.score(single, {"data": [[1.0] * 30]})
    assert status == 500
    assert body == {
        "error": {"code": "model_failed", "message": "the model failed to score: RuntimeError"}
    }


def test_pooled_models_load_lazily_into_a_cache_bounded_in_bytes(
    model_dirs: dict[str, Path], local_splits: Splits
) -> None:
    """Each model costs what loading it took; the least recently used go once the pool's
    models hold more than the budget, whatever their count."""
    costs = {"contoso": 300, "fabrikam": 500, "litware": 400}

    def load(folder: Path, threads: int) -> tuple[contract.OnnxModel, int]:
        return contract.OnnxModel(folder, threads), costs[folder.name]

    service = contract.ScoringService(model_dirs["pool"], max_bytes=900)
    assert service.pool is not None
    pool = contract.ModelCache(service.pool.root, 900, load=load)
    service.pool = pool
    assert pool.tenants() == ["contoso", "fabrikam", "litware"]
    for tenant in ("contoso", "fabrikam", "contoso"):
        status, _ = contract.score(
            service, {"data": _rows(local_splits, tenant, 2)}, {"X-Tenant-Id": tenant}
        )
        assert status == 200
    assert (len(pool), pool.bytes, pool.loads) == (2, 800, 2)
    # litware (400) takes the pool to 1200: fabrikam, the least recently used, goes.
    assert contract.score(service, {"data": _rows(local_splits, "litware", 1)},
                          {"x-tenant-id": "litware"})[0] == 200  # fmt: skip
    assert (len(pool), pool.bytes, pool.loads) == (2, 700, 3)
    assert contract.score(service, {"data": _rows(local_splits, "fabrikam", 1)},
                          {"x-tenant-id": "fabrikam"})[0] == 200  # fmt: skip
    assert pool.loads == 4 and pool.bytes <= 900  # contoso went: litware was used later
    # A model larger than the whole budget still serves: alone.
    tight = contract.ModelCache(service.pool.root, 100, load=load)
    tight.get("fabrikam")
    tight.get("contoso")
    assert (len(tight), tight.bytes) == (1, 300)


def test_a_pooled_models_cost_is_the_memory_its_load_took(model_dirs: dict[str, Path]) -> None:
    pool = contract.ModelCache(model_dirs["pool"], 10 * 2**20)
    for tenant in pool.tenants():
        pool.get(tenant)
    assert len(pool) == 3
    files = sum(
        (model_dirs["pool"] / t / contract.MODEL_FILE).stat().st_size for t in pool.tenants()
    )
    # At least each file and the session floor; a few MiB at most for these small models.
    assert files + 3 * contract.SESSION_FLOOR_BYTES <= pool.bytes < 10 * 2**20


def test_a_pooled_deployment_needs_a_known_tenant(
    model_dirs: dict[str, Path], local_splits: Splits
) -> None:
    service = contract.ScoringService(model_dirs["pool"])
    body = {"data": _rows(local_splits, "contoso", 1)}
    assert contract.score(service, body)[0] == 400
    for tenant in ("umbrella", "../single", "CONTOSO", "a/../contoso"):
        status, answer = contract.score(service, body, {"x-tenant-id": tenant})
        assert status == 404, tenant
        assert answer["error"]["code"] == "not_found"
    assert service.pool is not None and service.pool.loads == 0  # nothing outside the pool


def test_text_models_take_text_rows(model_dirs: dict[str, Path]) -> None:
    service = contract.ScoringService(model_dirs["pool"])
    headers = {"x-tenant-id": "litware"}
    status, body = contract.score(
        service, {"data": [["my invoice shows a refund charge"], ["server crash error"]]}, headers
    )
    assert status == 200 and body["predictions"] == [0, 1]
    assert contract.score(service, {"data": [[42]]}, headers) == (
        400,
        {"error": {"code": "invalid_input", "message": "row 0: expected text, got int"}},
    )
    long_text = {"data": [["x" * 10_001]]}
    assert contract.score(service, long_text, headers)[1]["error"]["message"] == (
        "row 0: 10001 characters, above the limit of 10000"
    )


def test_init_and_run_as_the_server_calls_them(
    model_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, local_splits: Splits
) -> None:
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(model_dirs["single"]))
    contract.init()
    answer = contract.run(json.dumps({"data": _rows(local_splits, "contoso", 2)}))
    assert len(answer["predictions"]) == 2
    # Without the server's response class (not in the control plane), an error is a body.
    assert contract.run("{}")["error"]["code"] == "invalid_input"


class _RecordingCollector:
    """Azure ML's Collector interface: collect(frame, context) -> context."""

    def __init__(self, fail: bool = False) -> None:
        self.frames: list[Any] = []
        self.fail = fail

    def collect(self, frame: Any, context: Any = None) -> Any:
        if self.fail:
            raise RuntimeError("the collector's queue is full")
        self.frames.append((frame, context))
        return f"context-{len(self.frames)}"


def test_collection_is_on_only_where_azure_ml_configured_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The embedded platform's deployments (no collector variables) collect nothing in
    score.py: the gateway's collector records their exchanges instead."""
    for name in (contract.MDC_CONFIG_PATH, contract.MDC_ENABLED):
        monkeypatch.delenv(name, raising=False)
    assert contract.DataCollection.from_environment() is None
    assert not contract.collection_requested({contract.MDC_ENABLED: "false"})
    assert contract.collection_requested({contract.MDC_ENABLED: "True"})
    assert contract.collection_requested({contract.MDC_CONFIG_PATH: "/var/mdc/config.json"})


def test_collected_frames_name_the_columns_and_a_failing_collector_fails_no_request(
    model_dirs: dict[str, Path], local_splits: Splits
) -> None:
    import pandas as pd  # noqa: PLC0415 - the scoring image's, present here through MLflow

    inputs, outputs = _RecordingCollector(), _RecordingCollector()
    collecting = contract.ScoringService(
        model_dirs["single"], collection=contract.DataCollection(inputs, outputs, pd.DataFrame)
    )
    rows = _rows(local_splits, "contoso", 3)
    status, body = contract.score(collecting, json.dumps({"data": rows}))
    assert status == 200
    (features, _), = inputs.frames
    (answers, context), = outputs.frames
    assert list(features.columns) == collecting.single.schema.columns  # type: ignore[union-attr]
    assert np.allclose(features.to_numpy(), np.array(rows, dtype=np.float32))
    assert answers["prediction"].tolist() == body["predictions"] and context == "context-1"
    assert answers["probabilities"].tolist() == body["probabilities"]
    # Under the gateway's request id, when the request has one: labels name that id.
    keyed = contract.ScoringService(
        model_dirs["single"],
        collection=contract.DataCollection(
            inputs, outputs, pd.DataFrame, correlation=lambda request_id: f"ctx:{request_id}"
        ),
    )
    contract.score(keyed, json.dumps({"data": rows}), {"X-Request-Id": "r-1"})
    assert inputs.frames[-1][1] == "ctx:r-1"
    # The tenant the gateway names is on every collected row, a single model's too.
    contract.score(keyed, json.dumps({"data": rows}), {"x-tenant-id": "contoso"})
    assert set(inputs.frames[-1][0]["tenant_id"]) == {"contoso"}
    assert set(outputs.frames[-1][0]["tenant_id"]) == {"contoso"}
    broken = contract.ScoringService(
        model_dirs["single"],
        collection=contract.DataCollection(
            _RecordingCollector(fail=True), outputs, pd.DataFrame
        ),
    )
    assert contract.score(broken, json.dumps({"data": rows})) == (200, body)


def test_the_cache_budget_is_the_variable_deployments_set() -> None:
    from tenancy import contracts  # noqa: PLC0415 - score.py itself imports nothing of ours

    assert contract.CACHE_BYTES_VARIABLE == contracts.SETTING_MODEL_CACHE_BYTES
