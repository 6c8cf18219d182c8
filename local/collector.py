"""Inference data collection to blob storage in Azure ML's data collector layout
(``modelDataCollector/<endpoint>/<deployment>/<collection>/<yyyy>/<mm>/<dd>/<hh>/<id>.jsonl``):
records are buffered in memory and written by a background thread, so scoring never waits
for storage; a failed write is retried at the next flush, never raised into a request."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from automation.drift_watch import COLLECTOR_ROOT

logger = logging.getLogger("tenant_mlops.collector")


class BlobCollector:
    def __init__(
        self, container: Any, flush_seconds: float = 2.0, max_buffered: int = 100_000
    ) -> None:
        self.container = container
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._buffers: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.dropped = 0

    def start(self) -> BlobCollector:
        self._thread.start()
        return self

    def __call__(
        self, endpoint: str, deployment: str, collection: str, record: dict[str, Any]
    ) -> None:
        hour = datetime.now(UTC)
        prefix = f"{COLLECTOR_ROOT}/{endpoint}/{deployment}/{collection}/{hour:%Y/%m/%d/%H}/"
        line = json.dumps(record)
        with self._lock:
            if sum(len(b) for b in self._buffers.values()) >= self.max_buffered:
                self.dropped += 1  # storage is down for long: shed data, keep serving
                return
            self._buffers.setdefault(prefix, []).append(line)

    def flush(self) -> int:
        with self._lock:
            buffers, self._buffers = self._buffers, {}
        written = 0
        for prefix, lines in buffers.items():
            try:
                self.container.upload_blob(
                    f"{prefix}{uuid.uuid4().hex}.jsonl", "\n".join(lines).encode()
                )
                written += len(lines)
            except Exception:  # storage unavailable: keep the lines for the next flush
                logger.warning(
                    "collector could not write %d record(s) under %s", len(lines), prefix
                )
                with self._lock:
                    self._buffers.setdefault(prefix, [])[:0] = lines
        return written

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()
