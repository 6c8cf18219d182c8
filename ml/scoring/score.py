"""The scoring contract: ``init()`` / ``run(raw)`` as Azure ML managed online endpoints (and
azureml-inference-server-http) call them, around an ONNX model run by onnxruntime.

Lifecycle per request: load (once, in ``init``) -> validate -> predict -> postprocess.

Requests::

    {"data": [[f1, f2, ...], ...]}
    {"input_data": {"columns": ["f1", "f2", ...], "data": [[...], ...]}}

Answers ``{"predictions": [...], "probabilities": [[...], ...], "classes": [...]}`` in
request order. A bad request gets HTTP 400 with ``{"error": {"code", "message"}}`` naming
the problem (shape, type, NaN or infinity, batch size, columns); an unknown tenant of a
pooled deployment 404; a model failure 500 without internals.

One deployment serves one model (``AZUREML_MODEL_DIR`` holds one ``schema.json``) or, pooled,
many tenants' models (one folder per tenant id, each with its ``schema.json``): the tenant
comes from the ``x-tenant-id`` header the gateway sets (callers cannot set it), and models
load lazily into a bounded LRU cache.

On Azure, a deployment with a data collector gets its inputs and outputs collected through
``azureml.ai.monitoring.Collector`` (``model_inputs`` / ``model_outputs``). With a custom
scoring script nothing is collected unless the script calls it
(https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data). The
collector is used only when Azure ML tells the container that collection is on: it sets
``AZUREML_MDC_CONFIG_PATH`` or ``AZUREML_MDC_ENABLED``. Elsewhere the embedded platform's
gateway collects, and this file collects nothing.

This file is the endpoint's code asset and runs unchanged in the scoring image: it imports
only the standard library, numpy and onnxruntime (orjson, the server's response class and
the data collector with pandas when they are there). Classes are plain (no dataclasses):
the server loads this file with ``spec_from_file_location`` without registering it as a
module.
"""

import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

try:  # orjson parses float-heavy bodies >10x faster; it refuses NaN and Infinity as we do
    from orjson import loads as _fast_loads
except ImportError:  # the standard library alone still serves, only slower
    _fast_loads = None  # type: ignore[assignment]

logger = logging.getLogger("tenant_mlops.score")

TENANT_HEADER = "x-tenant-id"
#: The gateway's id of the request (tenancy.request_ids): collected data is keyed by it.
REQUEST_ID_HEADER = "x-request-id"
SCHEMA_FILE = "schema.json"
MODEL_FILE = "model.onnx"
_TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
_NUMBER_TYPES = {int, float}


class ScoringError(Exception):
    status = 500
    code = "model_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class ScoringInputError(ScoringError):
    """The request is wrong; the message says how."""

    status = 400
    code = "invalid_input"


class UnknownTenantError(ScoringError):
    status = 404
    code = "not_found"


class Schema:
    """What a model accepts (written beside the model by the export)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.input_name: str = document["input_name"]
        self.text: bool = document["input_type"] == "string"
        self.columns: list[str] = list(document["columns"])
        self.classes: list[int] = list(document["classes"])
        self.max_batch: int = int(document.get("max_batch") or 1000)
        self.max_text_length: int = int(document.get("max_text_length") or 10_000)

    @classmethod
    def load(cls, folder: Path) -> "Schema":
        return cls(json.loads((folder / SCHEMA_FILE).read_text(encoding="utf-8")))


# --- validate ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ScoringInputError(f"{name} is not allowed: send finite numbers")


def parse_body(raw: Any) -> Any:
    """The request body as JSON; NaN and Infinity literals are refused, not read."""
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ScoringInputError("the body is not UTF-8 text") from None
    if not isinstance(raw, str) or not raw.strip():
        raise ScoringInputError("the body is empty: send a JSON object")
    if _fast_loads is not None:
        try:
            return _fast_loads(raw)
        except ValueError:
            pass  # the standard parser below names the problem (NaN, depth, position)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise ScoringInputError("the body is nested too deeply") from None
    except json.JSONDecodeError as error:
        raise ScoringInputError(f"the body is not valid JSON: {error.msg} at {error.pos}") from None


def rows_of(body: Any, schema: Schema) -> list[Any]:
    """The rows of either request shape, in the model's column order."""
    if not isinstance(body, dict):
        raise ScoringInputError("the body must be a JSON object with 'data' or 'input_data'")
    shapes = [key for key in ("data", "input_data") if key in body]
    if len(shapes) != 1:
        raise ScoringInputError("send exactly one of 'data' or 'input_data'")
    if shapes[0] == "data":
        return _row_list(body["data"], "data")
    frame = body["input_data"]
    if not isinstance(frame, dict) or "columns" not in frame or "data" not in frame:
        raise ScoringInputError("'input_data' must be an object with 'columns' and 'data'")
    columns = frame["columns"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ScoringInputError("'input_data.columns' must be a list of column names")
    order = _column_order(columns, schema)
    rows = _row_list(frame["data"], "input_data.data")
    _check_lengths(rows, len(columns))
    return [[row[i] for i in order] for row in rows]


def _row_list(rows: Any, where: str) -> list[Any]:
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise ScoringInputError(f"'{where}' must be a list of rows, each a list of values")
    return rows


def _column_order(columns: list[str], schema: Schema) -> list[int]:
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    missing = [c for c in schema.columns if c not in columns]
    unknown = [c for c in columns if c not in schema.columns]
    problems = []
    if duplicates:
        problems.append(f"duplicate column(s): {', '.join(duplicates)}")
    if missing:
        problems.append(f"missing column(s): {', '.join(missing[:10])}")
    if unknown:
        problems.append(f"unknown column(s): {', '.join(unknown[:10])}")
    if problems:
        raise ScoringInputError("; ".join(problems))
    return [columns.index(c) for c in schema.columns]


def _check_lengths(rows: list[Any], width: int) -> None:
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ScoringInputError(f"row {index} has {len(row)} values, expected {width}")


def validate(body: Any, schema: Schema) -> np.ndarray:
    """Validated model input: float32 (rows, columns), or strings (rows, 1) for text."""
    rows = rows_of(body, schema)
    if not rows:
        raise ScoringInputError("no rows to score")
    if len(rows) > schema.max_batch:
        raise ScoringInputError(f"{len(rows)} rows is above the batch limit of {schema.max_batch}")
    _check_lengths(rows, len(schema.columns))
    return _text_input(rows, schema) if schema.text else _numeric_input(rows, schema)


def _numeric_input(rows: list[Any], schema: Schema) -> np.ndarray:
    # Exact types: bool is an int subclass, and a string would be parsed by numpy. The set
    # of types is built in C (map, chain): a per-value Python loop cost more than the model.
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        _name_bad_value(rows, schema)
    try:
        values = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise ScoringInputError("a number is too large to represent") from None
    if not np.all(np.isfinite(values)) or np.any(np.abs(values) > np.finfo(np.float32).max):
        row, column = np.argwhere(~np.isfinite(values) | (np.abs(values) > 3.4e38))[0]
        raise ScoringInputError(
            f"row {row}, column '{schema.columns[column]}': value out of the float32 range"
        )
    return values.astype(np.float32)


def _name_bad_value(rows: list[Any], schema: Schema) -> None:
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if type(value) not in (int, float):
                kind = "null" if value is None else type(value).__name__
                raise ScoringInputError(
                    f"row {r}, column '{schema.columns[c]}': expected a number, got {kind}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ScoringInputError(f"row {r}, column '{schema.columns[c]}': not finite")


def _text_input(rows: list[Any], schema: Schema) -> np.ndarray:
    for index, row in enumerate(rows):
        text = row[0]
        if not isinstance(text, str):
            raise ScoringInputError(f"row {index}: expected text, got {type(text).__name__}")
        if len(text) > schema.max_text_length:
            raise ScoringInputError(
                f"row {index}: {len(text)} characters, above the limit of {schema.max_text_length}"
            )
    return np.array(rows, dtype=object).reshape(-1, 1)


# --- load, predict, postprocess ---------------------------------------------------------------


class OnnxModel:
    def __init__(self, folder: Path, threads: int = 1) -> None:
        self.schema = Schema.load(folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, probabilities = self.session.run(None, {self.schema.input_name: inputs})
        return np.asarray(labels), np.asarray(probabilities)

    def score(
        self, body: Any, collection: "DataCollection | None" = None, request_id: str = ""
    ) -> dict[str, Any]:
        started = time.perf_counter()
        inputs = validate(body, self.schema)
        try:
            labels, probabilities = self.predict(inputs)
        except Exception as error:
            logger.exception("the model failed")
            raise ScoringError(f"the model failed to score: {type(error).__name__}") from error
        result = postprocess(labels, probabilities, self.schema)
        if collection is not None:
            millis = (time.perf_counter() - started) * 1000
            collection.record(self.schema.columns, inputs, result, request_id, millis)
        return result


def postprocess(labels: np.ndarray, probabilities: np.ndarray, schema: Schema) -> dict[str, Any]:
    return {
        "predictions": labels.astype(np.int64).tolist(),
        "probabilities": probabilities.astype(np.float64).round(6).tolist(),
        "classes": schema.classes,
    }


#: What a loaded model costs at least (the ONNX Runtime session's own structures), where the
#: process's resident memory cannot be read: measured at 118 to 200 KiB for the platform's
#: small models (bench/results/pooled_dense.json).
SESSION_FLOOR_BYTES = 128 * 1024
CACHE_BYTES_VARIABLE = "TENANT_MLOPS_MODEL_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


def resident_bytes() -> int | None:
    """This process's resident memory (Linux; None elsewhere)."""
    try:
        pages = Path("/proc/self/statm").read_text(encoding="ascii").split()[1]
        return int(pages) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def measured_load(folder: Path, threads: int) -> tuple[OnnxModel, int]:
    """The model and what loading it cost in resident memory, at least its file's size and
    the session floor (a load beside another allocation may measure less)."""
    before = resident_bytes()
    model = OnnxModel(folder, threads)
    after = resident_bytes()
    floor = (folder / MODEL_FILE).stat().st_size + SESSION_FLOOR_BYTES
    if before is None or after is None:
        return model, floor
    return model, max(after - before, floor)


class ModelCache:
    """Pooled deployments: one model per tenant, loaded on first use, least recently used
    evicted once the loaded models' memory exceeds ``max_bytes``. Bounded in bytes, not in
    count: a pool's models differ in size, and it is the instance's memory that runs out.
    The model just loaded always stays, whatever it costs."""

    def __init__(
        self,
        root: Path,
        max_bytes: int,
        threads: int = 1,
        load: Callable[[Path, int], tuple[OnnxModel, int]] = measured_load,
    ) -> None:
        self.root = root
        self.max_bytes = max(1, max_bytes)
        self.threads = threads
        self._load = load
        self._models: OrderedDict[str, tuple[OnnxModel, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0
        self.bytes = 0

    def tenants(self) -> list[str]:
        return sorted(p.parent.name for p in self.root.glob(f"*/{SCHEMA_FILE}"))

    def get(self, tenant: str) -> OnnxModel:
        if not _TENANT_ID.match(tenant):
            raise UnknownTenantError(f"no model for tenant '{tenant[:40]}'")
        with self._lock:
            found = self._models.get(tenant)
            if found is not None:
                self._models.move_to_end(tenant)
                return found[0]
        folder = self.root / tenant
        if not (folder / SCHEMA_FILE).is_file():
            raise UnknownTenantError(f"no model for tenant '{tenant}'")
        model, cost = self._load(folder, self.threads)  # outside the lock: others keep scoring
        with self._lock:
            self.loads += 1
            previous = self._models.pop(tenant, None)
            if previous is not None:  # loaded twice at once: the first copy goes
                self.bytes -= previous[1]
            self._models[tenant] = (model, cost)
            self.bytes += cost
            while self.bytes > self.max_bytes and len(self._models) > 1:
                _, (_, freed) = self._models.popitem(last=False)
                self.bytes -= freed
        return model

    def __len__(self) -> int:
        return len(self._models)


# --- data collection on Azure -------------------------------------------------------------

MDC_CONFIG_PATH = "AZUREML_MDC_CONFIG_PATH"
MDC_ENABLED = "AZUREML_MDC_ENABLED"
TENANT_COLUMN = "tenant_id"


def collection_requested(env: "dict[str, str] | os._Environ[str]") -> bool:
    """Whether Azure ML configured a data collector for this deployment."""
    return bool(env.get(MDC_CONFIG_PATH)) or env.get(MDC_ENABLED, "").lower() == "true"


class DataCollection:
    """Inputs and outputs of each scored request, handed to Azure ML's data collector. The
    collector writes them under ``modelDataCollector/...`` on the workspace's blob store,
    where drift monitoring reads them. Collection never fails a request: a collector error
    is logged and the answer goes out."""

    def __init__(
        self, inputs: Any, outputs: Any, frame: Any, tenant: str = "", correlation: Any = None
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self._frame = frame  # pandas.DataFrame, imported only where collection is on
        self.tenant = tenant
        # Makes the collector's correlation context from the request's id (the gateway's
        # x-request-id, which the tenant's labels name): azureml-ai-monitoring's
        # BasicCorrelationContext. Each collected line carries it as ``correlationid``,
        # which is how Azure ML joins ground truth to predictions
        # (https://learn.microsoft.com/azure/machine-learning/how-to-collect-production-data).
        # None: the collector draws its own id.
        self._correlation = correlation

    @classmethod
    def from_environment(cls) -> "DataCollection | None":
        if not collection_requested(os.environ):
            return None
        try:
            import pandas as pd  # noqa: PLC0415 - only where Azure ML collects
            from azureml.ai.monitoring import Collector  # noqa: PLC0415
        except ImportError:
            logger.error(
                "the deployment has a data collector, but azureml-ai-monitoring or pandas is "
                "not in the environment: no inputs or outputs are collected"
            )
            return None
        from azureml.ai.monitoring.context import BasicCorrelationContext  # noqa: PLC0415

        on_error = _log_collector_error
        return cls(
            Collector(name="model_inputs", on_error=on_error),
            Collector(name="model_outputs", on_error=on_error),
            pd.DataFrame,
            correlation=lambda request_id: BasicCorrelationContext(id=request_id),
        )

    def for_tenant(self, tenant: str) -> "DataCollection":
        """The same collectors, with each row tagged by the pooled tenant it was for."""
        return DataCollection(self.inputs, self.outputs, self._frame, tenant, self._correlation)

    def record(
        self,
        columns: list[str],
        inputs: np.ndarray,
        result: dict[str, Any],
        request_id: str = "",
        scoring_ms: float = 0.0,
    ) -> None:
        try:
            features = self._frame(inputs, columns=columns)
            # Probabilities too: quality needs them (ROC AUC, the estimate before labels).
            answers = self._frame(
                {
                    "prediction": result["predictions"],
                    "probabilities": result["probabilities"],
                    "classes": [result["classes"]] * len(result["predictions"]),
                    # Each row's share of the request's time: usage metering per tenant.
                    "scoring_ms": [round(scoring_ms / max(1, len(inputs)), 4)]
                    * len(result["predictions"]),
                }
            )
            if self.tenant:
                features.insert(0, TENANT_COLUMN, self.tenant)
                answers.insert(0, TENANT_COLUMN, self.tenant)
            given = self._correlation(request_id) if request_id and self._correlation else None
            # The outputs carry the inputs' correlation context: the two are joined by it.
            context = (
                self.inputs.collect(features, given)
                if given is not None
                else self.inputs.collect(features)
            )
            self.outputs.collect(answers, context)
        except Exception:  # collection must never fail a request
            logger.exception("data collection failed; the request was answered")


def _log_collector_error(error: Exception) -> None:
    logger.warning("data collector: %s", error)


class ScoringService:
    """A single model, or a pooled deployment's tenants."""

    def __init__(
        self,
        model_dir: Path,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        threads: int = 1,
        collection: DataCollection | None = None,
    ) -> None:
        self.collection = collection
        schemas = sorted(model_dir.rglob(SCHEMA_FILE))
        if not schemas:
            raise FileNotFoundError(f"no {SCHEMA_FILE} under {model_dir}")
        tenant_folders = {p.parent.parent for p in schemas}
        self.single: OnnxModel | None = None
        self.pool: ModelCache | None = None
        if len(schemas) == 1:
            self.single = OnnxModel(schemas[0].parent, threads)
        elif len(tenant_folders) == 1:
            self.pool = ModelCache(tenant_folders.pop(), max_bytes, threads)
        else:
            raise ValueError(f"models under {model_dir} are not one folder per tenant")

    def score(self, raw: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
        body = parse_body(raw)
        request_id = _header(headers or {}, REQUEST_ID_HEADER)[:100]
        # The gateway names the tenant on every route: each collected row carries it.
        tenant = _header(headers or {}, TENANT_HEADER)
        if self.single is not None:
            collection = self.collection
            if collection is not None and _TENANT_ID.match(tenant):
                collection = collection.for_tenant(tenant)
            return self.single.score(body, collection, request_id)
        assert self.pool is not None
        if not tenant:
            raise ScoringInputError(f"a pooled deployment needs the {TENANT_HEADER} header")
        collection = self.collection.for_tenant(tenant) if self.collection else None
        return self.pool.get(tenant).score(body, collection, request_id)


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def score(
    service: ScoringService, raw: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """Status and body for one request; never raises for anything a caller sends."""
    try:
        return 200, service.score(raw, headers)
    except ScoringError as error:
        return error.status, error.body()
    except Exception:  # a model or library failure must not take the worker down
        logger.exception("scoring failed")
        return 500, ScoringError("the model failed to score").body()


# --- the entry points Azure ML calls --------------------------------------------------------

# The server calls init() once per worker, then run() per request: the loaded service must
# live between the calls, and this holder is the only state the worker keeps.
_service: list[ScoringService] = []


def init() -> None:
    model_dir = Path(os.environ.get("AZUREML_MODEL_DIR", "."))
    # A pooled deployment's model cache per worker: set from the instance's memory
    # (tenancy.instance_types.model_cache_bytes), each worker holding its own.
    max_bytes = int(os.environ.get(CACHE_BYTES_VARIABLE, str(DEFAULT_CACHE_BYTES)))
    threads = int(os.environ.get("TENANT_MLOPS_SCORING_THREADS", "1"))
    collection = DataCollection.from_environment()
    _service[:] = [ScoringService(model_dir, max_bytes, threads, collection)]
    logger.info(
        "scoring service ready for %s (data collection %s)",
        model_dir,
        "on" if collection else "off",
    )


def respond(raw_data: Any, request_headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """``run()``'s status and body, for a host that writes the HTTP response itself."""
    if not _service:
        return 503, ScoringError("init() has not run").body()
    return score(_service[0], raw_data, request_headers)


def run(raw_data: Any, request_headers: dict[str, str] | None = None) -> Any:
    status, body = respond(raw_data, request_headers)
    return body if status == 200 else _response(status, body)


def _response(status: int, body: dict[str, Any]) -> Any:
    """An HTTP response with the status, under the server; the body elsewhere."""
    try:
        from azureml_inference_server_http.api.aml_response import (  # noqa: PLC0415
            AMLResponse,
        )
    except ImportError:
        return body
    return AMLResponse(body, status, json_str=True)
