"""Inference data collection to blob storage in Azure ML's data collector layout
(``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<mm>/<dd>/<hh>/<id>.jsonl``;
each record carries its request id as ``correlationid`` and the calling tenant as
``tenant``, each output row its prediction and class probabilities):
the gateway hands over each scored exchange as the raw bytes it forwarded and received;
parsing them into records, buffering and writing happen on a background thread, so scoring
never waits for JSON or storage; a failed write is retried at the next flush under the same
blob name (each record is stored once), never raised into a request."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tenancy.contracts import COLLECTION_INPUTS, COLLECTION_OUTPUTS, collector_prefix

logger = logging.getLogger("tenant_mlops.collector")

#: Bytes of exchanges parsed between two hand-overs of the GIL (a fraction of a millisecond).
YIELD_EVERY_BYTES = 16 << 10


@dataclass(frozen=True)
class Exchange:
    """One scored request as the gateway saw it."""

    endpoint: str
    deployment: str
    correlation: str
    at: datetime
    body: bytes
    answer: bytes
    tenant: str = ""  # who called (every record says so: pooled endpoints serve several)
    scoring_ms: float = 0.0  # the deployment's time on it (usage metering)


def records_of(exchange: Exchange) -> list[tuple[str, dict[str, Any]]]:
    """(collection, record) pairs for the inputs and the outputs; none when the request or
    the answer has no rows the collector understands (they pass through unrecorded)."""
    try:
        request_json = orjson.loads(exchange.body)
        answer_json = orjson.loads(exchange.answer)
    except ValueError:
        return []
    rows = _rows(request_json)
    predictions = answer_json.get("predictions") if isinstance(answer_json, dict) else None
    if rows is None or not isinstance(predictions, list) or len(rows) != len(predictions):
        return []
    common = {"correlationid": exchange.correlation, "time": exchange.at.isoformat()}
    if exchange.tenant:
        common["tenant"] = exchange.tenant
    return [
        (COLLECTION_INPUTS, {**common, "data": rows}),
        (
            COLLECTION_OUTPUTS,
            {**common, "data": _outputs(predictions, answer_json, exchange.scoring_ms)},
        ),
    ]


def _outputs(predictions: list[Any], answer: dict[str, Any], scoring_ms: float) -> list[Any]:
    """Each row's prediction, with its class probabilities (and the classes they are of)
    when the model gave them: quality needs them (ROC AUC, and the estimate from confidence
    before labels arrive); and its share of the request's scoring time (usage metering)."""
    probabilities = answer.get("probabilities")
    if not isinstance(probabilities, list) or len(probabilities) != len(predictions):
        return predictions
    classes = answer.get("classes")
    each = round(scoring_ms / len(predictions), 4) if predictions else 0.0
    return [
        {"prediction": p, "probabilities": q, "classes": classes, "scoring_ms": each}
        for p, q in zip(predictions, probabilities, strict=True)
    ]


def _rows(request_json: Any) -> list[Any] | None:
    """The request's rows as the collector stores them (objects keyed by column when the
    caller named the columns)."""
    if not isinstance(request_json, dict):
        return None
    if isinstance(request_json.get("data"), list):
        return list(request_json["data"])
    frame = request_json.get("input_data")
    if (
        isinstance(frame, dict)
        and isinstance(frame.get("columns"), list)
        and isinstance(frame.get("data"), list)
    ):
        columns = frame["columns"]
        return [
            dict(zip(columns, row, strict=False)) for row in frame["data"] if isinstance(row, list)
        ]
    return None


class BlobCollector:
    def __init__(
        self,
        container: Any,
        flush_seconds: float = 2.0,
        max_buffered: int = 100_000,
        max_exchange_bytes: int = 64 << 20,
    ) -> None:
        self.container = container
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._buffers: dict[str, list[str]] = {}
        # Batches cut and named but not written yet (storage was unreachable): retried under
        # the same blob name, overwriting, so a write that landed although its answer was lost
        # is not stored twice.
        self._unwritten: list[tuple[str, list[str]]] = []
        self._exchanges: list[Exchange] = []
        self._exchange_bytes = 0
        self.max_exchange_bytes = max_exchange_bytes
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.dropped = 0

    def start(self) -> BlobCollector:
        self._thread.start()
        return self

    def submit(self, exchange: Exchange) -> None:
        """From the gateway's event loop: only a list append under the lock."""
        size = len(exchange.body) + len(exchange.answer)
        with self._lock:
            if (
                len(self._exchanges) + self._buffered() >= self.max_buffered
                or self._exchange_bytes + size > self.max_exchange_bytes
            ):
                self.dropped += 1  # storage is slow or down: shed data, keep serving
                return
            self._exchanges.append(exchange)
            self._exchange_bytes += size

    def __call__(
        self,
        endpoint: str,
        deployment: str,
        collection: str,
        record: dict[str, Any],
        at: datetime | None = None,
    ) -> None:
        hour = at or datetime.now(UTC)
        prefix = collector_prefix(endpoint, deployment, collection, hour)
        line = orjson.dumps(record).decode()
        with self._lock:
            if self._buffered() >= self.max_buffered:
                self.dropped += 1
                return
            self._buffers.setdefault(prefix, []).append(line)

    def _buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values()) + sum(
            len(lines) for _, lines in self._unwritten
        )

    def _parse_exchanges(self) -> None:
        with self._lock:
            exchanges, self._exchanges = self._exchanges, []
            self._exchange_bytes = 0
        parsed = 0
        for exchange in exchanges:
            for collection, record in records_of(exchange):
                self(exchange.endpoint, exchange.deployment, collection, record, exchange.at)
            parsed += len(exchange.body) + len(exchange.answer)
            if parsed >= YIELD_EVERY_BYTES:
                # Let the gateway's event loop have the GIL now: otherwise it waits for
                # the interpreter's switch interval (5 ms) each time, on scoring's path.
                time.sleep(0)
                parsed = 0

    def flush(self) -> int:
        """Write what is buffered; a batch that cannot be written is kept, under its name."""
        self._parse_exchanges()
        with self._lock:
            buffers, self._buffers = self._buffers, {}
            batches = [
                *self._unwritten,
                *(
                    (f"{prefix}{uuid.uuid4().hex}.jsonl", lines)
                    for prefix, lines in buffers.items()
                ),
            ]
            self._unwritten = []
        written = 0
        for name, lines in batches:
            try:
                self.container.upload_blob(name, "\n".join(lines).encode(), overwrite=True)
                written += len(lines)
            except Exception:  # storage unavailable: the same batch again at the next flush
                logger.warning("collector could not write %d record(s) to %s", len(lines), name)
                with self._lock:
                    self._unwritten.append((name, lines))
        return written

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()
