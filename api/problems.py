"""RFC 9457 problem details: every error the API returns, mapped in one place.

Routes never build error responses: they raise :mod:`ledger.errors` errors (or FastAPI
raises its validation error) and the handlers here answer ``application/problem+json``
with a ``type``, a ``title``, the ``status`` and a ``detail`` that says what to do.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import (
    ChainUnavailable,
    ConfigError,
    Conflict,
    ContractReverted,
    InvalidInput,
    LedgerError,
    NotFound,
    PayloadTooLarge,
    PeerError,
    PeerTimeout,
    PermissionDenied,
    ProofError,
    StorageError,
    StorageUnavailable,
    Unauthenticated,
)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://libshare.example/problems/"
RETRY_AFTER_S = 5
"""Seconds a 503 (database or chain unavailable) asks the client to wait before retrying."""

# Most specific first: the first family an error belongs to decides its status.
STATUS: list[tuple[type[LedgerError], int, str]] = [
    (PayloadTooLarge, 413, "payload-too-large"),
    (InvalidInput, 422, "invalid-input"),
    (NotFound, 404, "not-found"),
    (Unauthenticated, 401, "unauthenticated"),
    (PermissionDenied, 403, "permission-denied"),
    (Conflict, 409, "conflict"),
    (ContractReverted, 409, "contract-refused"),
    (ProofError, 409, "proof-failed"),
    (ChainUnavailable, 503, "chain-unavailable"),
    (StorageUnavailable, 503, "database-unavailable"),
    (StorageError, 503, "storage-unavailable"),
    (ConfigError, 500, "misconfigured"),
    (PeerTimeout, 504, "peer-timeout"),
    (PeerError, 502, "peer-failed"),
]


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


async def _ledger_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LedgerError)
    return ledger_problem(exc)


def ledger_problem(exc: LedgerError) -> JSONResponse:
    """The problem+json answer for a ledger error (its status decided by :data:`STATUS`)."""
    for family, status, slug in STATUS:
        if isinstance(exc, family):
            response = problem(status, slug, exc.title, str(exc))
            if status == 401:
                response.headers["WWW-Authenticate"] = "Bearer"
            if status == 503:  # the database or the chain node is down: worth retrying soon
                response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
    return problem(500, "ledger-error", exc.title, str(exc))


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    detail = "; ".join(parts) + " — correct these fields and send the request again"
    return problem(
        422,
        "invalid-request",
        "Invalid request",
        detail,
        errors=[{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]],
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    hints = {
        404: "no such path; the API lives under /v1 (see /docs)",
        405: "this path does not take that method (see /docs)",
    }
    detail = hints.get(exc.status_code, str(exc.detail))
    return problem(exc.status_code, f"http-{exc.status_code}", str(exc.detail), detail)


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""
    app.add_exception_handler(LedgerError, _ledger_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
