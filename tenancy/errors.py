"""One error hierarchy for the whole platform.

Every error carries a stable ``code`` (what a caller matches on) and a message meant for a
person. Only the edge (HTTP triggers, the gateway, the CLI) turns an error into a status or
an exit code, through :data:`HTTP_STATUS_BY_CODE` and :func:`http_status_for`.

Hierarchy::

    MlopsError                       code: internal_error          HTTP 500
     ├── ConfigError                 code: invalid_config          HTTP 400  (CLI exit 2)
     ├── InvalidInputError           code: invalid_input           HTTP 400
     ├── AuthenticationError         code: unauthenticated         HTTP 401
     ├── PermissionDeniedError       code: permission_denied       HTTP 403
     │    └── BudgetExceededError    code: budget_exceeded         HTTP 403
     ├── NotFoundError               code: not_found               HTTP 404
     ├── ConflictError               code: conflict                HTTP 409
     ├── PayloadTooLargeError        code: payload_too_large       HTTP 413
     ├── RateLimitedError            code: rate_limited            HTTP 429
     ├── ModelFailedError            code: model_failed            HTTP 424
     ├── RequestTimeoutError         code: request_timeout         HTTP 408
     ├── PolicyViolationError        code: policy_violation        HTTP 422  (CLI exit 1)
     └── DependencyError             code: dependency_unavailable  HTTP 503
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


class MlopsError(Exception):
    """Base of every error the platform raises on purpose."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The body an edge returns: code, message and details, never a traceback."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


@dataclass(frozen=True)
class ConfigIssue:
    """One bad key in a configuration document: where it is and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(MlopsError):
    """A configuration document is invalid. Names every bad key at once."""

    code = "invalid_config"

    def __init__(self, source: str, issues: Iterable[ConfigIssue]) -> None:
        self.source = source
        self.issues: tuple[ConfigIssue, ...] = tuple(sorted(set(issues), key=_issue_order))
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{source}: {count} configuration {noun}:\n{lines}",
            details={"issues": [{"path": i.path, "message": i.message} for i in self.issues]},
        )

    @property
    def paths(self) -> list[str]:
        return [issue.path for issue in self.issues]

    @classmethod
    def single(cls, source: str, path: str, message: str) -> ConfigError:
        return cls(source, [ConfigIssue(path, message)])


def _issue_order(issue: ConfigIssue) -> tuple[str, str]:
    return (issue.path, issue.message)


class InvalidInputError(MlopsError):
    code = "invalid_input"


class AuthenticationError(MlopsError):
    code = "unauthenticated"


class PermissionDeniedError(MlopsError):
    code = "permission_denied"


class BudgetExceededError(PermissionDeniedError):
    """A tenant's budget is spent: its requests are refused until the next period."""

    code = "budget_exceeded"

    @classmethod
    def for_tenant(cls, tenant: str, until: str) -> BudgetExceededError:
        """The same words at both gateways (``infra.gateway`` builds them in its policy)."""
        return cls(
            f"the budget of tenant {tenant} is spent: its scoring requests are refused "
            f"until {until}",
            details={"tenant": tenant, "until": until},
        )


class NotFoundError(MlopsError):
    code = "not_found"

    @classmethod
    def for_item(cls, kind: str, name: str) -> NotFoundError:
        return cls(f"{kind} '{name}' does not exist", details={"kind": kind, "name": name})


class ConflictError(MlopsError):
    code = "conflict"


class PayloadTooLargeError(MlopsError):
    code = "payload_too_large"


class RateLimitedError(MlopsError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_seconds: float) -> None:
        super().__init__(message, details={"retry_after_seconds": retry_after_seconds})
        self.retry_after_seconds = retry_after_seconds


class ModelFailedError(MlopsError):
    code = "model_failed"


class RequestTimeoutError(MlopsError):
    code = "request_timeout"


class PolicyViolationError(MlopsError):
    code = "policy_violation"


class DependencyError(MlopsError):
    code = "dependency_unavailable"


HTTP_STATUS_BY_CODE: dict[str, int] = {
    MlopsError.code: 500,
    ConfigError.code: 400,
    InvalidInputError.code: 400,
    AuthenticationError.code: 401,
    PermissionDeniedError.code: 403,
    BudgetExceededError.code: 403,
    NotFoundError.code: 404,
    ConflictError.code: 409,
    PayloadTooLargeError.code: 413,
    RateLimitedError.code: 429,
    ModelFailedError.code: 424,
    RequestTimeoutError.code: 408,
    PolicyViolationError.code: 422,
    DependencyError.code: 503,
}


def http_status_for(error: MlopsError) -> int:
    """The HTTP status an edge answers for ``error``."""
    return HTTP_STATUS_BY_CODE.get(error.code, 500)
