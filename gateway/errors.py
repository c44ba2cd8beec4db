"""Errors in each API's own shape: `{"error": "..."}` for /api, `{"error": {...}}` for /v1."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from gateway import wire_ollama, wire_openai

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_exceeded",
    499: "request_cancelled",
    503: "server_busy",
}


class ApiError(Exception):
    """An answer that is an error: the status and a message a person can act on."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.headers = headers or {}


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def model_not_found(name: str) -> ApiError:
    return ApiError(404, f"model '{name}' not found", param="model")


def queue_full(retry_after_s: int = 1) -> ApiError:
    # Ollama's own text, two spaces included, so clients that match on it keep working.
    return ApiError(
        503,
        "server busy, please try again.  maximum pending requests exceeded",
        headers={"Retry-After": str(retry_after_s)},
    )


def client_full(limit: int, retry_after_s: int = 1) -> ApiError:
    return ApiError(
        429,
        f"too many requests: this client already has {limit} jobs queued or running "
        "(HERD_MAX_JOBS_PER_CLIENT); retry once one has finished",
        headers={"Retry-After": str(retry_after_s)},
    )


def is_openai_path(path: str) -> bool:
    return path.startswith("/v1/") or path == "/v1"


def error_body(path: str, status: int, message: str, param: str | None = None) -> bytes:
    if is_openai_path(path):
        kind = _OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return msgspec.json.encode(
            wire_openai.ErrorBody(error=wire_openai.ErrorDetail(message=message, type=kind, param=param))
        )
    return msgspec.json.encode(wire_ollama.ErrorBody(error=message))


def handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return Response(
        error_body(request.url.path, exc.status, exc.message, exc.param),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers,
    )


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors (404 route, 405 method, 413 body) in the dialect's shape."""
    message = exc.detail or "error"
    if exc.status_code == 404 and message == "Not Found":
        message = f"404 page not found: {request.method} {request.url.path}"
    return Response(
        error_body(request.url.path, exc.status_code, message),
        status_code=exc.status_code,
        media_type="application/json",
        headers=dict(exc.headers or {}),
    )


def decode_body(body: bytes, kind: type[Any]) -> Any:
    """A request body as `kind`, or a 400 whose message names the offending field."""
    if not body.strip():
        raise bad_request("missing request body")
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        param = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else None
        raise bad_request(text, param=param) from exc
    except msgspec.DecodeError as exc:
        raise bad_request(f"invalid JSON body: {exc}") from exc
