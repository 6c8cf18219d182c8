"""Batch scoring as an Azure ML batch deployment runs it: input files split into
mini-batches, the entry script's ``run(mini_batch)`` called per mini-batch (retried up to
``max_retries`` times when it raises), each returned row appended to ``predictions.csv``
(``output_action: append_row``), and the job failed once more files failed than
``error_threshold`` allows (-1: any number). A ``summary.json`` says what happened."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from tenancy import contracts


class EntryScript(Protocol):
    def init(self) -> None: ...

    def run(self, mini_batch: list[str]) -> list[str]: ...


@dataclass
class BatchSummary:
    status: str = "completed"  # "completed" | "failed"
    files: int = 0
    mini_batches: int = 0
    rows: int = 0
    failed_files: list[str] = field(default_factory=list)
    retries: int = 0
    seconds: float = 0.0
    output: str = ""
    reason: str = ""


def mini_batches(files: Sequence[Path], size: int) -> list[list[Path]]:
    if size < 1:
        raise ValueError("mini_batch_size must be at least 1")
    return [list(files[i : i + size]) for i in range(0, len(files), size)]


def run_batch(
    entry: EntryScript,
    inputs: Sequence[Path],
    output_dir: Path,
    *,
    mini_batch_size: int = 10,
    error_threshold: int = -1,
    max_retries: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchSummary:
    started = clock()
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions = output_dir / contracts.BATCH_OUTPUT_FILE
    predictions.write_text("")
    files = sorted(inputs)
    summary = BatchSummary(files=len(files), output=str(predictions))
    entry.init()
    with predictions.open("a", encoding="utf-8") as out:
        for batch in mini_batches(files, mini_batch_size):
            summary.mini_batches += 1
            rows = _run_with_retries(entry, batch, max_retries, summary)
            for row in rows:
                out.write(row + "\n")  # append_row
            summary.rows += len(rows)
            answered = {row.split(",", 1)[0] for row in rows}
            summary.failed_files += [p.name for p in batch if p.name not in answered]
            if 0 <= error_threshold < len(summary.failed_files):
                summary.status = "failed"
                summary.reason = (
                    f"{len(summary.failed_files)} file(s) failed, above the error threshold "
                    f"of {error_threshold}"
                )
                break
    summary.seconds = round(clock() - started, 3)
    (output_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _run_with_retries(
    entry: EntryScript, batch: list[Path], max_retries: int, summary: BatchSummary
) -> list[str]:
    for attempt in range(max_retries + 1):
        try:
            return list(entry.run([str(p) for p in batch]))
        except Exception:  # the script failed as a whole: Azure ML retries the mini-batch
            if attempt == max_retries:
                return []
            summary.retries += 1
    return []
