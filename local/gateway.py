"""The scoring gateway: the tenant gateway and Azure ML's managed online endpoints, on one
machine.

``POST /{endpoint}/score`` with ``Authorization: Bearer <key>``:

- the tenant is the key's owner, never something the request says; a key of another tenant
  gets 401 for this endpoint, as an endpoint key of another endpoint would;
- 413 above the tenant's payload limit, 429 with ``Retry-After`` above its rate limit or when
  the chosen deployment already has too many requests pending;
- the ``azureml-model-deployment`` header picks a deployment of the caller's own endpoint
  (pooled endpoints serve several tenants: the header is ignored there, as the cloud gateway
  strips it), otherwise live traffic is split by weight; 404 when no deployment has traffic;
- mirrored traffic is copied in the background and its answer discarded;
- the deployment's answer passes through (200, 400); 408 when it does not answer in time; 424
  when the model failed (a 5xx, a dead process);
- inputs and outputs are collected in the Azure ML data collector layout, and every request
  counts in its deployment's metrics (requests, errors by status, latency percentiles);
- the answer's ``x-request-id`` is the request's id (``tenancy.request_ids``): the tenant
  sends labels for it later.

A tenant whose budget is spent (a pooled tenant's metered budget: ``automation.costs``) gets
403 ``budget_exceeded`` naming the day its requests are served again; labels are still taken.

``POST /{endpoint}/feedback`` with the same key and ``{"labels": [{"request_id": ..., "label":
...}]}`` (a label per request, or a list of one per row of it) stores ground truth
(``tenancy.contracts.COLLECTION_LABELS``) before it answers how many labels it accepted and
which ids are unknown: not issued to this tenant, or older than the label horizon. Nothing
is stored when storage fails (503, try again).

Deployments are separate processes (``score.py`` under azureml-inference-server-http): one
that fails, hangs or dies only fails its own requests. An admin API on the same server,
behind an admin token, is what the automation's local adapter uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from genai.chat import ChatService
from local.collector import Exchange
from local.deployments import DeploymentManager
from local.http_pool import HttpPool, UpstreamError
from local.keys import SLOTS, KeyRing
from tenancy import contracts, request_ids
from tenancy.contracts import labels_prefix
from tenancy.errors import BudgetExceededError, MlopsError, http_status_for

logger = logging.getLogger("tenant_mlops.gateway")
DEPLOYMENT_HEADER = "azureml-model-deployment"
#: Chat completions: ``POST /genai/{deployment}/chat/completions`` (as infra.genai on Azure).
GENAI_PATH = contracts.GENAI_API_PATH
TENANT_HEADER = "x-tenant-id"


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


class _Refusal(Exception):  # noqa: N818 - control flow inside the gateway, never escapes
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = _error_body(code, message)
        self.headers = headers or {}


class _Disconnected(Exception):  # noqa: N818 - the caller left before sending its body
    pass


# --- configuration ------------------------------------------------------------------------------


@dataclass
class Deployment:
    name: str
    url: str  # the inference server's base URL
    max_pending: int = 16
    pending: int = 0
    # In flight per tenant: a pooled deployment's slots are shared fairly among its tenants.
    pending_by_tenant: dict[str, int] = field(default_factory=dict)
    # Set while the deployment's process is being restarted (a monotonic deadline: when it
    # is expected back), or for good once it is failed (a crash loop): why it cannot serve.
    down_until: float = 0.0
    down_reason: str = ""
    connections: HttpPool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.connections = HttpPool(self.url)

    def fair_slot_free(self, tenant: str, tenants: int) -> bool:
        """Whether ``tenant`` may take one more of the ``max_pending`` slots. Each of the
        ``tenants`` is guaranteed an equal share; beyond its share a tenant takes only slots
        no other tenant's unused share needs, so one busy tenant within its rate limit can
        never take the whole deployment from the others."""
        if self.pending >= self.max_pending:
            return False
        share = max(1, self.max_pending // max(1, tenants))
        mine = self.pending_by_tenant.get(tenant, 0)
        if mine < share:
            return True
        others = sum(min(n, share) for t, n in self.pending_by_tenant.items() if t != tenant)
        reserved = share * (tenants - 1) - others  # other tenants' unused guaranteed slots
        return self.max_pending - self.pending > reserved


@dataclass
class EndpointConfig:
    name: str
    tenants: set[str]  # who may call it: the tenant, or a pool's tenants
    pooled: bool
    timeout_seconds: float = 5.0
    traffic: dict[str, int] = field(default_factory=dict)
    mirror: dict[str, int] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pooled": self.pooled,
            "tenants": sorted(self.tenants),
            "traffic": dict(self.traffic),
            "mirror": dict(self.mirror),
            "deployments": {d.name: d.url for d in self.deployments.values()},
        }


@dataclass(frozen=True)
class GroundTruth:
    """Labels for scored requests: the installation's request-id key, how late a label may
    come, how many one request may carry, and where they are written (``write(blob name,
    JSON lines)``, blocking: it runs on a worker thread)."""

    key: bytes
    horizon: timedelta
    max_labels: int
    write: Callable[[str, bytes], object]


@dataclass
class TenantLimits:
    rate_per_minute: int
    max_payload_bytes: int
    # Requests in flight at once, as API Management's limit-concurrency enforces it.
    max_concurrency: int = 1_000_000


# --- rate limits and metrics ------------------------------------------------------------------


class TokenBucket:
    """Requests per minute with a burst of a second's worth (at least one)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def take(self) -> float:
        """0 when allowed, else the seconds until a token is free."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Sample(NamedTuple):
    """One request's outcome."""

    at: float  # epoch seconds
    status: int
    millis: float
    mirrored: bool = False


class Metrics:
    """The last samples per deployment (bounded), and statistics over any recent window."""

    def __init__(self, keep: int = 50_000) -> None:
        self.keep = keep
        self.samples: dict[tuple[str, str], deque[tuple[float, int, float, bool]]] = {}

    def record(self, endpoint: str, deployment: str, sample: Sample) -> None:
        # Kept as plain tuples of plain values: the garbage collector stops tracking those
        # once they survive a collection, so the tens of thousands kept per deployment are
        # not walked again by every full collection, a pause on the scoring path. (It does
        # not untrack tuple subclasses such as Sample.)
        kept = self.samples.setdefault((endpoint, deployment), deque(maxlen=self.keep))
        kept.append(tuple.__new__(tuple, sample))

    def stats(self, endpoint: str, deployment: str, since: float, until: float) -> dict[str, Any]:
        kept = self.samples.get((endpoint, deployment), ())
        window = [Sample._make(s) for s in kept if since <= s[0] < until]
        by_status: dict[str, int] = {}
        for sample in window:
            by_status[str(sample.status)] = by_status.get(str(sample.status), 0) + 1
        latencies = sorted(s.millis for s in window)

        def percentile(q: float) -> float | None:
            return (
                latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None
            )

        return {
            "requests": len(window),
            # 4xx are the caller's; what counts against a deployment is what it failed.
            "errors": sum(1 for s in window if s.status >= 500 or s.status in (408, 424)),
            "by_status": by_status,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
        }


# --- the gateway --------------------------------------------------------------------------------


class Gateway:
    def __init__(
        self,
        keys: KeyRing,
        limits: dict[str, TenantLimits],
        admin_token: str,
        *,
        collector: Callable[[Exchange], None] | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        deployer: DeploymentManager | None = None,
        fetch: Callable[[str, str, Path], None] | None = None,
        on_change: Callable[[], None] | None = None,
        ground_truth: GroundTruth | None = None,
        chat: ChatService | None = None,
        admin_routes: Sequence[Route] = (),
    ) -> None:
        self.keys = keys
        # Chat completions of the tenants with generative AI (None: this gateway has none).
        self.chat = chat
        # None: request ids are random and no label is taken (a gateway without storage).
        self.ground_truth = ground_truth
        # Called after every change of routing (traffic, mirror, deployments registered or
        # gone): the embedded platform writes its state then, so a crash loses none of it.
        self.on_change = on_change
        self.limits = limits
        self.admin_token = admin_token
        self.collector = collector
        self.clock = clock  # when samples happened: the automation reads windows of it
        # Deployments this gateway runs itself (the embedded platform): processes, started
        # in the background, registered here once healthy.
        self.deployer = deployer
        self.fetch = fetch
        self.endpoints: dict[str, EndpointConfig] = {}
        self.metrics = Metrics()
        self.buckets = {t: TokenBucket(lim.rate_per_minute) for t, lim in limits.items()}
        self.in_flight: dict[str, int] = {}  # requests per tenant not answered yet
        # Tenants refused until a time (a spent budget): tenant -> (until, its date).
        self.budget_stops: dict[str, tuple[float, str]] = {}
        self.random = random.Random(seed)  # noqa: S311 - traffic split, not security
        self._background: set[asyncio.Task[Any]] = set()
        self.admin_app = Starlette(
            routes=[
                Route("/admin/endpoints", self.admin_list, methods=["GET"]),
                Route("/admin/endpoints/{endpoint}", self.admin_endpoint, methods=["GET", "PUT"]),
                Route("/admin/endpoints/{endpoint}/traffic", self.admin_traffic, methods=["PUT"]),
                Route(
                    "/admin/endpoints/{endpoint}/deployments/{deployment}",
                    self.admin_deployment,
                    methods=["GET", "PUT", "DELETE"],
                ),
                Route(
                    "/admin/endpoints/{endpoint}/deployments/{deployment}/stats",
                    self.admin_stats,
                    methods=["GET"],
                ),
                Route("/admin/keys/{tenant}/{slot}/rotate", self.admin_rotate, methods=["POST"]),
                Route(
                    "/admin/tenants/{tenant}/budget-stop",
                    self.admin_budget_stop,
                    methods=["PUT", "DELETE"],
                ),
                *admin_routes,
                Route("/health", self.health, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await self._asgi(scope, receive, send)

        # A plain coroutine function: servers tell ASGI 3 apps by that (not bound methods).
        self.app = app

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI app. Scoring is served here, before any framework: it is every tenant
        request, and the routing, middleware and request objects of Starlette cost more
        per request than the gateway's own work. Everything else goes to Starlette."""
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 3 and parts[0] == "" and parts[2] == "score" and parts[1]:
                await self._serve(self.score, parts[1], scope, receive, send)
                return
            if len(parts) == 3 and parts[0] == "" and parts[2] == "feedback" and parts[1]:
                await self._serve(self.feedback, parts[1], scope, receive, send)
                return
            if parts[:2] == ["", GENAI_PATH] and parts[3:] == ["chat", "completions"]:
                await self._serve(self.chat_completions, parts[2], scope, receive, send)
                return
            if parts == ["", GENAI_PATH, "feedback"]:
                await self._serve(self.chat_feedback, "", scope, receive, send)
                return
        await self.admin_app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        for endpoint in self.endpoints.values():
            for deployment in endpoint.deployments.values():
                deployment.connections.close()

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "endpoints": len(self.endpoints)})

    # --- scoring ---------------------------------------------------------------------------

    async def _serve(
        self,
        handler: Callable[[str, dict[str, str], Any], Any],
        name: str,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
    ) -> None:
        try:
            status, body, headers = await handler(name, _wanted_headers(scope), receive)
        except _Disconnected:
            return  # nobody to answer
        except Exception:  # a tenant's request must never take the shared gateway down
            logger.exception("scoring request failed inside the gateway")
            status, body, headers = 500, _error_body("internal", "the gateway failed"), {}
        raw_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def score(
        self, name: str, headers: dict[str, str], receive: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of one scoring request to endpoint ``name``."""
        started = time.perf_counter()
        try:
            tenant, endpoint, body = await self._admit(name, headers, receive)
            self._within_budget(tenant)
            deployment = self._route(endpoint, headers.get(DEPLOYMENT_HEADER), tenant)
        except _Refusal as refusal:
            return refusal.status, refusal.body, refusal.headers
        correlation = self._request_id(tenant)
        self._mirror(endpoint, tenant, body, exclude=deployment.name)
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1  # no await since _admit
        forwarded = time.perf_counter()
        try:
            status, answer = await self._forward(endpoint, deployment, tenant, body)
        finally:
            self.in_flight[tenant] -= 1
        served = time.perf_counter()
        millis = (served - started) * 1000
        now = self.clock()
        self.metrics.record(endpoint.name, deployment.name, Sample(now, status, millis))
        if status == 200 and self.collector is not None:
            # On the metrics' clock: drift reads windows of the collected data on the
            # same time as the rollout's analysis reads the metrics.
            at = datetime.fromtimestamp(now, UTC)
            exchange = Exchange(
                endpoint.name,
                deployment.name,
                correlation,
                at,
                body,
                answer,
                tenant,
                # The deployment's time on this request: the tenant's share of its compute.
                scoring_ms=(served - forwarded) * 1000,
            )
            self.collector(exchange)
        return status, answer, {DEPLOYMENT_HEADER: deployment.name, "x-request-id": correlation}

    def _request_id(self, tenant: str) -> str:
        if self.ground_truth is None:
            return str(uuid.uuid4())
        at = datetime.fromtimestamp(self.clock(), UTC)
        return request_ids.issue(self.ground_truth.key, tenant, at)

    # --- chat completions ------------------------------------------------------------------

    async def chat_completions(
        self, deployment: str, headers: dict[str, str], receive: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """``POST /genai/{deployment}/chat/completions``: the key's tenant, its payload limit
        and budget stop, then the chat service (genai.chat) off the event loop."""
        try:
            tenant, body = await self._admit_chat(headers, receive)
        except _Refusal as refusal:
            return refusal.status, refusal.body, refusal.headers
        assert self.chat is not None  # _admit_chat refuses without one
        answer = await asyncio.to_thread(self.chat.complete, tenant, deployment, body)
        return answer.status, json.dumps(answer.body).encode(), dict(answer.headers)

    async def chat_feedback(
        self, _: str, headers: dict[str, str], receive: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """``POST /genai/feedback``: a caller's verdict on one of its tenant's answers."""
        try:
            tenant, body = await self._admit_chat(headers, receive)
        except _Refusal as refusal:
            return refusal.status, refusal.body, refusal.headers
        assert self.chat is not None
        answer = self.chat.feedback(tenant, body)
        return answer.status, json.dumps(answer.body).encode(), dict(answer.headers)

    async def _admit_chat(self, headers: dict[str, str], receive: Any) -> tuple[str, bytes]:
        if self.chat is None:
            raise _Refusal(404, "not_found", "this gateway serves no chat completions")
        tenant = self.keys.tenant_of(_key_of(headers))
        if tenant is None:
            raise _Refusal(
                401, "unauthenticated", "send a valid key as 'Authorization: Bearer <key>'"
            )
        limit = self.limits[tenant].max_payload_bytes
        body = await _read_body(receive, headers.get("content-length"), limit)
        if body is None:
            raise _Refusal(413, "payload_too_large", f"the body is above {limit} bytes")
        self._within_budget(tenant)
        return tenant, body

    # --- ground truth ----------------------------------------------------------------------

    async def feedback(
        self, name: str, headers: dict[str, str], receive: Any
    ) -> tuple[int, bytes, dict[str, str]]:
        """Labels for requests the caller's key scored: stored, then counted."""
        try:
            tenant, endpoint, body = await self._admit(name, headers, receive)
            if self.ground_truth is None:
                raise _Refusal(404, "not_found", "this gateway takes no labels")
            labels = _labels(body, self.ground_truth.max_labels)
        except _Refusal as refusal:
            return refusal.status, refusal.body, refusal.headers
        truth = self.ground_truth
        now = datetime.fromtimestamp(self.clock(), UTC)
        accepted: dict[str, Any] = {}
        unknown: list[str] = []
        for request_id, label in labels:
            if request_ids.labellable(truth.key, tenant, request_id, now, truth.horizon):
                accepted[request_id] = label  # the last label sent for an id wins
            elif request_id not in unknown:
                unknown.append(request_id)
        if accepted:
            lines = [
                json.dumps(
                    {
                        "correlationid": rid,
                        "tenant": tenant,
                        "label": label,
                        "time": now.isoformat(),
                    }
                )
                for rid, label in accepted.items()
            ]
            blob = f"{labels_prefix(endpoint.name, now)}{uuid.uuid4().hex}.jsonl"
            try:
                await asyncio.to_thread(truth.write, blob, "\n".join(lines).encode())
            except Exception:  # storage down: nothing is accepted, the caller sends again
                logger.warning("labels for %s could not be stored", endpoint.name)
                return (
                    503,
                    _error_body("service_unavailable", "labels could not be stored; send again"),
                    {"Retry-After": "5"},
                )
        answer = {"accepted": len(accepted), "unknown": unknown}
        return 200, json.dumps(answer).encode(), {}

    async def _admit(
        self, name: str, headers: dict[str, str], receive: Any
    ) -> tuple[str, EndpointConfig, bytes]:
        """Who calls (from the key), which of their endpoints, within their limits."""
        tenant = self.keys.tenant_of(_key_of(headers))
        if tenant is None:
            raise _Refusal(
                401, "unauthenticated", "send a valid key as 'Authorization: Bearer <key>'"
            )
        endpoint = self.endpoints.get(name)
        if endpoint is None or tenant not in endpoint.tenants:
            raise _Refusal(401, "unauthenticated", "the key is not valid for this endpoint")
        limits = self.limits[tenant]
        body = await _read_body(receive, headers.get("content-length"), limits.max_payload_bytes)
        if body is None:
            raise _Refusal(
                413, "payload_too_large", f"the body is above {limits.max_payload_bytes} bytes"
            )
        wait = self.buckets[tenant].take()
        if wait:
            retry = {"Retry-After": str(max(1, round(wait)))}
            raise _Refusal(429, "rate_limited", "the tenant's rate limit is reached", retry)
        if self.in_flight.get(tenant, 0) >= limits.max_concurrency:
            message = f"the tenant's {limits.max_concurrency} concurrent requests are in flight"
            raise _Refusal(429, "concurrency_limited", message, {"Retry-After": "1"})
        return tenant, endpoint, body

    def _within_budget(self, tenant: str) -> None:
        stop = self.budget_stops.get(tenant)
        if stop is not None and self.clock() < stop[0]:
            refused = BudgetExceededError.for_tenant(tenant, stop[1])
            raise _Refusal(403, refused.code, refused.message)

    def _route(self, endpoint: EndpointConfig, requested: str | None, tenant: str) -> Deployment:
        name = self._choose(endpoint, requested)
        if name is None:
            raise _Refusal(
                404, "not_found", f"endpoint {endpoint.name} has no deployment with traffic"
            )
        deployment = endpoint.deployments.get(name)
        if deployment is None:
            raise _Refusal(404, "not_found", f"no deployment {name!r} in endpoint {endpoint.name}")
        if deployment.down_reason:
            raise _unavailable(deployment)
        tenants = len(endpoint.tenants) if endpoint.pooled else 1
        if not deployment.fair_slot_free(tenant, tenants):
            message = f"deployment {name} has too many pending requests"
            raise _Refusal(429, "rate_limited", message, {"Retry-After": "1"})
        return deployment

    def _choose(self, endpoint: EndpointConfig, requested: str | None) -> str | None:
        if requested and not endpoint.pooled:
            return requested  # the caller's own endpoint: any of its deployments, even at 0 %
        live = [(name, share) for name, share in endpoint.traffic.items() if share > 0]
        if not live:
            return None
        pick = self.random.uniform(0, sum(share for _, share in live))
        for name, share in live:
            pick -= share
            if pick <= 0:
                return name
        return live[-1][0]

    async def _forward(
        self, endpoint: EndpointConfig, deployment: Deployment, tenant: str, body: bytes
    ) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        if endpoint.pooled:
            headers[TENANT_HEADER] = tenant  # set here, never taken from the caller
        deployment.pending += 1
        deployment.pending_by_tenant[tenant] = deployment.pending_by_tenant.get(tenant, 0) + 1
        try:
            status, content = await deployment.connections.post(
                "/score", body, headers, endpoint.timeout_seconds
            )
            if status >= 500:
                return 424, _error_body(
                    "model_failed", f"deployment {deployment.name} failed to score"
                )
            return status, content
        except TimeoutError:
            return 408, _error_body(
                "request_timeout",
                f"deployment {deployment.name} did not answer in {endpoint.timeout_seconds:g} s",
            )
        except UpstreamError:
            return 424, _error_body(
                "model_failed", f"deployment {deployment.name} is not reachable"
            )
        finally:
            deployment.pending -= 1
            deployment.pending_by_tenant[tenant] -= 1

    def _mirror(self, endpoint: EndpointConfig, tenant: str, body: bytes, exclude: str) -> None:
        for name, share in endpoint.mirror.items():
            target = endpoint.deployments.get(name)
            if target is None or name == exclude or self.random.uniform(0, 100) >= share:
                continue
            task = asyncio.ensure_future(self._shadow(endpoint, target, tenant, body))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _shadow(
        self, endpoint: EndpointConfig, target: Deployment, tenant: str, body: bytes
    ) -> None:
        started = time.perf_counter()
        status, _ = await self._forward(endpoint, target, tenant, body)
        millis = (time.perf_counter() - started) * 1000
        self.metrics.record(
            endpoint.name, target.name, Sample(self.clock(), status, millis, mirrored=True)
        )

    # --- admin -----------------------------------------------------------------------------

    def _admin(self, request: Request) -> Response | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return error(401, "unauthenticated", "admin token required")
        return None

    async def admin_list(self, request: Request) -> Response:
        return self._admin(request) or JSONResponse([e.snapshot() for e in self.endpoints.values()])

    async def admin_endpoint(self, request: Request) -> Response:
        if (denied := self._admin(request)) is not None:
            return denied
        name = request.path_params["endpoint"]
        if request.method == "GET":
            found = self.endpoints.get(name)
            return (
                JSONResponse(found.snapshot())
                if found
                else error(404, "not_found", f"no endpoint {name}")
            )
        spec = await request.json()
        existing = self.endpoints.get(name)
        self.endpoints[name] = EndpointConfig(
            name=name,
            tenants=set(spec["tenants"]),
            pooled=bool(spec.get("pooled")),
            timeout_seconds=float(spec.get("timeout_seconds", 5.0)),
            traffic=existing.traffic if existing else {},
            mirror=existing.mirror if existing else {},
            deployments=existing.deployments if existing else {},
        )
        return JSONResponse(self.endpoints[name].snapshot())

    async def admin_traffic(self, request: Request) -> Response:
        if (denied := self._admin(request)) is not None:
            return denied
        endpoint = self.endpoints.get(request.path_params["endpoint"])
        if endpoint is None:
            return error(404, "not_found", "no such endpoint")
        spec = await request.json()
        traffic = {str(k): int(v) for k, v in (spec.get("traffic") or {}).items()}
        mirror = {str(k): int(v) for k, v in (spec.get("mirror") or {}).items() if int(v)}
        unknown = sorted((set(traffic) | set(mirror)) - set(endpoint.deployments))
        if unknown and any(traffic.get(u, 0) or mirror.get(u, 0) for u in unknown):
            return error(400, "invalid_input", f"unknown deployment(s): {', '.join(unknown)}")
        if sum(traffic.values()) not in (0, 100) or any(
            not 0 <= v <= 100 for v in traffic.values()
        ):
            return error(400, "invalid_input", f"traffic {traffic} must sum to 0 or 100")
        if len(mirror) > 1 or any(v > 50 or traffic.get(k, 0) for k, v in mirror.items()):
            return error(
                400, "invalid_input", "mirror at most 50 % to one deployment without live traffic"
            )
        # Shares of 0 for deployments that are gone (deleted after a drain) are dropped.
        traffic = {k: v for k, v in traffic.items() if v or k in endpoint.deployments}
        endpoint.traffic, endpoint.mirror = traffic, mirror  # one update, as Azure ML applies it
        self._changed()
        return JSONResponse(endpoint.snapshot())

    async def admin_deployment(self, request: Request) -> Response:
        if (denied := self._admin(request)) is not None:
            return denied
        endpoint = self.endpoints.get(request.path_params["endpoint"])
        if endpoint is None:
            return error(404, "not_found", "no such endpoint")
        name = request.path_params["deployment"]
        if request.method == "GET":
            return self._deployment_state(endpoint, name)
        if request.method == "DELETE":
            return await self._delete_deployment(endpoint, name)
        return await self._put_deployment(endpoint, name, await request.json())

    async def _delete_deployment(self, endpoint: EndpointConfig, name: str) -> Response:
        if endpoint.traffic.get(name, 0) or endpoint.mirror.get(name, 0):
            return error(409, "conflict", f"deployment {name} still has traffic")
        # Out of routing first, then drained: requests already sent to it finish before its
        # process stops, as Azure ML drains a deployment it deletes.
        draining = endpoint.deployments.get(name)
        self.unregister(endpoint.name, name)
        if draining is not None:
            await _drained(draining, endpoint.timeout_seconds)
            draining.connections.close()  # the connections the drained requests gave back
        if self.deployer is not None:
            await asyncio.to_thread(self.deployer.delete, endpoint.name, name)
        return JSONResponse(endpoint.snapshot())

    async def _put_deployment(
        self, endpoint: EndpointConfig, name: str, spec: dict[str, Any]
    ) -> Response:
        if "url" in spec:  # a server someone else runs
            self.register(endpoint.name, name, str(spec["url"]), int(spec.get("max_pending", 16)))
            return JSONResponse(endpoint.snapshot())
        models = {str(k): str(v) for k, v in (spec.get("models") or {}).items()}
        if self.deployer is None or self.fetch is None or not models:
            return error(400, "invalid_input", "give a url, or models to a gateway that runs them")
        carry = spec.get("carry_from")
        try:  # off the event loop: replacing a deployment stops its old process
            await asyncio.to_thread(
                self.deployer.create, endpoint.name, name, models, self.fetch, carry_from=carry
            )
        except MlopsError as refused:  # the platform is stopping
            return error(http_status_for(refused), refused.code, refused.message)
        return self._deployment_state(endpoint, name, 202)

    def register(self, endpoint: str, name: str, url: str, max_pending: int = 16) -> None:
        """A deployment ready to serve (its process is up): known to the endpoint at 0 %."""
        config = self.endpoints[endpoint]
        replaced = config.deployments.get(name)
        if replaced is not None:
            replaced.connections.close()
        config.deployments[name] = Deployment(name, url.rstrip("/"), max_pending)
        config.traffic.setdefault(name, 0)
        self._changed()

    def unregister(self, endpoint: str, name: str) -> None:
        config = self.endpoints.get(endpoint)
        if config is not None:
            gone = config.deployments.pop(name, None)
            config.traffic.pop(name, None)
            if gone is not None:
                gone.connections.close()
            self._changed()

    def suspend(self, endpoint: str, name: str, seconds: float | None, reason: str) -> None:
        """The deployment's process is down: requests get 503 with Retry-After for about
        ``seconds`` (it is being restarted), or 424 for good (``None``: it failed). It keeps
        its traffic share; ``register`` brings it back."""
        config = self.endpoints.get(endpoint)
        found = config.deployments.get(name) if config else None
        if found is not None:
            found.down_until = math.inf if seconds is None else time.monotonic() + seconds
            found.down_reason = reason

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # saving must never fail a routing change
                logger.exception("the platform could not save the gateway's state")

    def _deployment_state(self, endpoint: EndpointConfig, name: str, status: int = 200) -> Response:
        running = self.deployer.get(endpoint.name, name) if self.deployer else None
        if running is not None and self.deployer is not None:
            state_name, message = self.deployer.status_of(running)
            state = {"status": state_name, "message": message, "url": running.url}
            extra = {
                "models": running.models,
                "restarts": running.restarts,
                "liveness": self.deployer.liveness(),
                "max_pending": _max_pending(endpoint, name),
            }
            return JSONResponse({**state, **extra}, status)
        known = endpoint.deployments.get(name)
        if known is None:
            return error(404, "not_found", f"no deployment {name} in {endpoint.name}")
        # A server someone else runs: nothing here probes or restarts it.
        external: dict[str, Any] = {"status": "ready", "message": "", "url": known.url}
        external.update(models={}, liveness=None, max_pending=known.max_pending)
        return JSONResponse(external, status)

    async def admin_rotate(self, request: Request) -> Response:
        """A new key for one slot, returned once; the old one stops working at once."""
        if (denied := self._admin(request)) is not None:
            return denied
        tenant, slot = request.path_params["tenant"], request.path_params["slot"]
        if slot not in SLOTS:
            return error(400, "invalid_input", f"slot must be primary or secondary, got {slot!r}")
        if tenant not in self.keys.tenants:
            return error(404, "not_found", f"no keys for tenant {tenant!r}")
        actor = request.headers.get("x-actor", "admin")[:100]
        key = await asyncio.to_thread(self.keys.rotate, tenant, slot, actor)
        return JSONResponse({"tenant": tenant, "slot": slot, "key": key})

    async def admin_budget_stop(self, request: Request) -> Response:
        """PUT ``{"until": <ISO time>}``: refuse the tenant's scoring until then; DELETE:
        serve it again. Both idempotent (the automation applies a stop on every run)."""
        if (denied := self._admin(request)) is not None:
            return denied
        tenant = request.path_params["tenant"]
        if tenant not in self.limits:
            return error(404, "not_found", f"no tenant {tenant!r} at this gateway")
        if request.method == "DELETE":
            self.budget_stops.pop(tenant, None)
        else:
            try:
                until = datetime.fromisoformat(str((await request.json())["until"]))
            except (ValueError, KeyError, TypeError):
                return error(400, "invalid_input", 'send {"until": "<ISO 8601 time>"}')
            if until.tzinfo is None:
                return error(400, "invalid_input", "until needs a time zone (UTC: +00:00)")
            self.budget_stops[tenant] = (until.timestamp(), until.date().isoformat())
        self._changed()
        stop = self.budget_stops.get(tenant)
        return JSONResponse({"tenant": tenant, "refused_until": stop[1] if stop else None})

    async def admin_stats(self, request: Request) -> Response:
        if (denied := self._admin(request)) is not None:
            return denied
        since = float(request.query_params.get("since", 0))
        until = float(request.query_params.get("until", self.clock() + 1))
        endpoint, name = request.path_params["endpoint"], request.path_params["deployment"]
        stats = self.metrics.stats(endpoint, name, since, until)
        running = self.deployer.get(endpoint, name) if self.deployer else None
        stats["restarts"] = running.restarts if running else 0
        return JSONResponse(stats)


def _max_pending(endpoint: EndpointConfig, name: str) -> int | None:
    known = endpoint.deployments.get(name)
    return known.max_pending if known else None


def _unavailable(deployment: Deployment) -> _Refusal:
    """A deployment being restarted: 503 with when to try again; a failed one: 424, as
    Azure ML answers for a deployment whose model does not run."""
    if deployment.down_until == math.inf:
        return _Refusal(424, "model_failed", deployment.down_reason)
    retry = max(1, math.ceil(deployment.down_until - time.monotonic()))
    return _Refusal(503, "service_unavailable", deployment.down_reason, {"Retry-After": str(retry)})


#: JSON types a label may have: a class (number, text or boolean), or a number (regression).
_LABEL_TYPES = (bool, int, float, str)


def _is_label(value: Any) -> bool:
    return isinstance(value, _LABEL_TYPES) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _labels(body: bytes, most: int) -> list[tuple[str, Any]]:
    """(request id, label) pairs of a feedback body, or a 400 naming what is wrong."""
    try:
        document = json.loads(body)
    except ValueError:
        raise _Refusal(400, "invalid_input", "the body is not JSON") from None
    labels = document.get("labels") if isinstance(document, dict) else None
    if not isinstance(labels, list) or not labels:
        raise _Refusal(
            400, "invalid_input", 'send {"labels": [{"request_id": ..., "label": ...}, ...]}'
        )
    if len(labels) > most:
        raise _Refusal(400, "invalid_input", f"{len(labels)} labels: at most {most} a request")
    pairs = []
    for index, item in enumerate(labels):
        request_id = item.get("request_id") if isinstance(item, dict) else None
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise _Refusal(400, "invalid_input", f"labels[{index}]: request_id must be text")
        values = label if isinstance(label, list) else [label]
        if not values or not all(_is_label(value) for value in values):
            raise _Refusal(
                400,
                "invalid_input",
                f"labels[{index}]: label must be a number, text or boolean "
                "(or a list of them, one per row of the request)",
            )
        pairs.append((request_id[:100], label))
    return pairs


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


_WANTED = {b"authorization", b"api-key", b"content-length", DEPLOYMENT_HEADER.encode()}


def _key_of(headers: dict[str, str]) -> str:
    """The caller's key: ``Authorization: Bearer <key>`` (OpenAI's clients), or the
    ``api-key`` header API Management takes on Azure."""
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:]
    return headers.get("api-key", "")


def _wanted_headers(scope: dict[str, Any]) -> dict[str, str]:
    """The few request headers the gateway reads (ASGI names are lower case already)."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _WANTED
    }


async def _read_body(receive: Any, declared: str | None, limit: int) -> bytes | None:
    """The body, or None above ``limit`` (refused on the declared length before reading)."""
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _drained(deployment: Deployment, timeout_seconds: float) -> None:
    """Until no request is in flight to ``deployment`` (at most one request timeout)."""
    deadline = time.monotonic() + timeout_seconds
    while deployment.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # in-flight requests end on the same event loop
