"""API errors as the real API server reports them: ``Status`` bodies and their reasons."""

from __future__ import annotations

from typing import Any

from tekton_notifications.devtools.kubeapi.kinds import Obj

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _resource(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def status_body(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    """A ``Status`` object as the real API server sends it on failure."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    body["message"] = message
    body["reason"] = reason
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class KubeError(Exception):
    """An API error: becomes an HTTP status with a Kubernetes ``Status`` body."""

    def __init__(self, code: int, message: str, reason: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details: Obj | None = details or None

    def status(self) -> Obj:
        return status_body(self.code, self.reason, self.message, self.details)


def _not_found(group: str, plural: str, name: str) -> KubeError:
    msg = f'{_resource(group, plural)} "{name}" not found'
    return KubeError(404, msg, name=name, group=group, kind=plural)


def _conflict(group: str, plural: str, name: str) -> KubeError:
    msg = (
        f'Operation cannot be fulfilled on {_resource(group, plural)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again"
    )
    return KubeError(409, msg, "Conflict", name=name, group=group, kind=plural)


def _invalid(kind: str, group: str, name: str, field_path: str, detail: str) -> KubeError:
    qualified = f"{kind}.{group}" if group else kind
    cause = {"reason": "FieldValueInvalid", "message": detail, "field": field_path}
    msg = f'{qualified} "{name}" is invalid: {field_path}: {detail}'
    return KubeError(422, msg, name=name, group=group, kind=kind, causes=[cause])
