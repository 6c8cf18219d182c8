"""Errors to HTTP at the edge: the one place an MlopsError becomes a status and a body."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from tenancy.errors import MlopsError, http_status_for


def json_response(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")


def error_response(error: MlopsError) -> func.HttpResponse:
    return json_response({"error": error.to_dict()}, http_status_for(error))
