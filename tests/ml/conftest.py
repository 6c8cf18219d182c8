"""The ML tests' environment: MLflow without telemetry. The tenant data and model folders
they share with the embedded platform's tests are fixtures of tests/conftest.py."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
