"""A small host for ``functions/function_app.py`` on one machine (no Core Tools here): it
indexes the app's functions as the Functions host does (v2 model: from the decorators) and
serves them.

- HTTP triggers at ``/api/<route>`` (route templates become path parameters), called with
  real ``azure.functions.HttpRequest`` objects;
- Event Grid triggers at ``/runtime/webhooks/eventgrid?functionName=<name>``, the path the
  cloud host exposes, taking the Event Grid schema (a list of events; the subscription
  validation handshake answered);
- timer triggers on their NCRONTAB schedules (six fields, seconds first), from a thread; a
  schedule written ``%NAME%`` is the app setting NAME, as the Functions host resolves it;
- ``POST /admin/functions/<name>`` with the host's master key (``x-functions-key``) runs a
  non-HTTP function now, as the Functions host's admin API does (here it answers 202 when
  the run has finished, so a caller knows its effects are visible).

A function that raises answers 500 for that call only (and is logged); the host keeps serving.
With a ``SignInModule`` (local/sign_in.py) in front, HTTP triggers see only the identity
headers the module wrote, as behind App Service authentication.
"""

from __future__ import annotations

import hmac
import importlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.timer import TimerRequest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.sign_in import SignInModule
from tenancy.errors import AuthenticationError, DependencyError

logger = logging.getLogger("tenant_mlops.functions_host")
APP_DIR = Path(__file__).resolve().parent.parent / "functions"


# --- NCRONTAB ---------------------------------------------------------------------------------

_FIELDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # sec min hour day month weekday


def _values(part: str, low: int, high: int) -> set[int]:
    found: set[int] = set()
    for item in part.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            start, end = low, high
        elif "-" in span:
            start, end = (int(x) for x in span.split("-"))
        else:
            start = end = int(span)
        if not low <= start <= end <= high or step < 1:
            raise ValueError(f"{part!r} is outside {low}..{high}")
        found.update(range(start, end + 1, step))
    return found


class Schedule:
    """A six-field NCRONTAB expression (``0 */5 * * * *``)."""

    def __init__(self, expression: str) -> None:
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(f"NCRONTAB {expression!r} must have 6 fields (seconds first)")
        self.expression = expression
        self.sets = [_values(p, lo, hi) for p, (lo, hi) in zip(parts, _FIELDS, strict=True)]

    def matches(self, moment: datetime) -> bool:
        second, minute, hour, day, month, weekday = self.sets
        return (
            moment.second in second
            and moment.minute in minute
            and moment.hour in hour
            and moment.day in day
            and moment.month in month
            and (moment.weekday() + 1) % 7 in weekday  # NCRONTAB: Sunday is 0
        )

    def next_after(self, moment: datetime) -> datetime:
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        for _ in range(366 * 24 * 3600):
            if self.matches(candidate):
                return candidate
            candidate += timedelta(seconds=1)
        raise ValueError(f"{self.expression!r} never fires")


# --- the host ---------------------------------------------------------------------------------


def load_app(app_dir: Path = APP_DIR) -> func.FunctionApp:
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))  # the app's root is its import root, as in Azure
    module = importlib.import_module("function_app")
    app: func.FunctionApp = module.app
    return app


@cache
def index(app: func.FunctionApp) -> tuple[tuple[str, Any, Callable[..., Any]], ...]:
    """(name, trigger, function) of every function, indexed once per app: the SDK refuses
    to index an app twice."""
    return tuple(
        (str(f.get_function_name()), f.get_trigger(), f.get_user_function())
        for f in app.get_functions()
    )


_SETTING = re.compile(r"^%([A-Za-z0-9_]+)%$")


def resolve_schedule(expression: str, settings: Mapping[str, str]) -> str:
    """A schedule as written, or the app setting a ``%NAME%`` schedule names."""
    found = _SETTING.match(expression.strip())
    if found is None:
        return expression
    value = settings.get(found.group(1), "")
    if not value:
        raise DependencyError(f"the timer schedule {expression} names a setting that is not set")
    return value


class FunctionsHost:
    def __init__(
        self,
        app: func.FunctionApp,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        settings: Mapping[str, str] | None = None,
        master_key: str | None = None,
        sign_in: SignInModule | None = None,
    ) -> None:
        self.clock = clock
        self.master_key = master_key
        self.sign_in = sign_in
        settings = os.environ if settings is None else settings
        self.http: list[tuple[str, list[str], Callable[..., Any]]] = []
        self.event_grid: dict[str, Callable[..., Any]] = {}
        self.timers: list[tuple[str, Schedule, Callable[..., Any]]] = []
        for name, trigger, user in index(app):
            kind = type(trigger).__name__
            if kind == "HttpTrigger":
                methods = [
                    str(getattr(m, "value", m)) for m in (trigger.methods or ["GET", "POST"])
                ]
                self.http.append((trigger.route or name, methods, user))
            elif kind == "EventGridTrigger":
                self.event_grid[name] = user
            elif kind == "TimerTrigger":
                schedule = Schedule(resolve_schedule(trigger.schedule, settings))
                self.timers.append((name, schedule, user))
        routes = [
            Route(f"/api/{route}", self._http_handler(user), methods=methods)
            for route, methods, user in self.http
        ]
        routes.append(Route("/runtime/webhooks/eventgrid", self._event_grid, methods=["POST"]))
        routes.append(Route("/admin/host/status", self._status, methods=["GET"]))
        routes.append(Route("/admin/functions/{name}", self._run_now, methods=["POST"]))
        self.app = Starlette(routes=routes)
        self._stop = threading.Event()
        self._timer_thread = threading.Thread(target=self._run_timers, daemon=True)

    # --- HTTP --------------------------------------------------------------------------------

    def _http_handler(self, user: Callable[..., Any]) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            body = await request.body()
            headers = dict(request.headers)
            if self.sign_in is not None:
                try:
                    headers = self.sign_in.headers_for(headers)
                except AuthenticationError as error:
                    return _error(401, error.code, error.message)
            incoming = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=headers,
                params=dict(request.query_params),
                route_params={k: str(v) for k, v in request.path_params.items()},
                body=body,
            )
            try:
                outgoing: func.HttpResponse = user(incoming)
            except Exception:  # one call fails, the host keeps serving
                logger.exception("function %s failed", user.__name__)
                return JSONResponse(
                    {"error": {"code": "internal", "message": "the function failed"}}, 500
                )
            return Response(
                outgoing.get_body(),
                outgoing.status_code,
                headers=dict(outgoing.headers),
                media_type=outgoing.mimetype,
            )

        return handle

    # --- Event Grid ----------------------------------------------------------------------------

    async def _event_grid(self, request: Request) -> Response:
        name = request.query_params.get("functionName", "")
        user = self.event_grid.get(name)
        if user is None:
            return JSONResponse(
                {"error": {"code": "not_found", "message": f"no Event Grid function {name!r}"}}, 404
            )
        try:
            events = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"code": "invalid_input", "message": "not JSON"}}, 400)
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list):
            return JSONResponse(
                {"error": {"code": "invalid_input", "message": "send a list of events"}}, 400
            )
        for event in events:
            if event.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent":
                return JSONResponse(
                    {"validationResponse": event.get("data", {}).get("validationCode")}
                )
        failed = sum(1 for event in events if not self._deliver(user, event))
        # Event Grid retries a batch that did not succeed (and dead-letters it in the end).
        return Response(status_code=500 if failed else 200)

    def _deliver(self, user: Callable[..., Any], event: Any) -> bool:
        try:
            user(
                func.EventGridEvent(
                    id=str(event.get("id", "")),
                    data=event.get("data"),
                    topic=str(event.get("topic", "")),
                    subject=str(event.get("subject", "")),
                    event_type=str(event.get("eventType", "")),
                    event_time=_parse_time(event.get("eventTime")),
                    data_version=str(event.get("dataVersion", "")),
                )
            )
        except Exception:
            logger.exception("Event Grid function %s failed", user.__name__)
            return False
        return True

    # --- timers ----------------------------------------------------------------------------

    def run_due(self, previous: datetime, now: datetime) -> list[str]:
        """Run every timer whose schedule fired in (previous, now]; their names."""
        ran = []
        for name, schedule, user in self.timers:
            if schedule.next_after(previous) <= now:
                try:
                    user(TimerRequest(past_due=False))
                except Exception:
                    logger.exception("timer %s failed", name)
                ran.append(name)
        return ran

    def _run_timers(self) -> None:
        previous = self.clock()
        while not self._stop.wait(1.0):
            now = self.clock()
            self.run_due(previous, now)
            previous = now

    def start_timers(self) -> None:
        self._timer_thread.start()

    def stop(self) -> None:
        self._stop.set()

    async def _run_now(self, request: Request) -> Response:
        given = request.headers.get("x-functions-key", "")
        if not self.master_key or not hmac.compare_digest(given, self.master_key):
            return _error(401, "unauthorized", "the admin API needs the host's master key")
        name = request.path_params["name"]
        if name not in {timer for timer, _, _ in self.timers}:
            return _error(404, "not_found", f"no timer function {name!r}")
        if not await run_in_threadpool(self.run, name):
            return _error(500, "internal", f"{name} failed; see the host's log")
        return Response(status_code=202)

    def run(self, name: str) -> bool:
        """Run the timer function ``name`` now; whether it succeeded."""
        for timer, _, user in self.timers:
            if timer == name:
                try:
                    user(TimerRequest(past_due=False))
                except Exception:
                    logger.exception("function %s failed", name)
                    return False
                return True
        raise KeyError(name)

    async def _status(self, request: Request) -> Response:
        return JSONResponse(
            {
                "http": sorted(route for route, _, _ in self.http),
                "eventGrid": sorted(self.event_grid),
                "timers": {name: s.expression for name, s, _ in self.timers},
            }
        )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
