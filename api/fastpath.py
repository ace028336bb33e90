"""The ordinary ``POST /v1/access/check``, served before FastAPI's machinery.

Checks are nearly all of a delivery service's traffic, and FastAPI's per-request
machinery (routing, dependency injection, response validation and re-encoding) costs
several times the decision itself. :class:`LibshareApp` serves the ordinary check — a JSON
body the :class:`~api.routes.access.AccessCheck` model accepts, from a valid delivery
key acting for its own member — with that same model, the same authentication and the
same :func:`~api.routes.access.share_request` the route uses, so both decide and answer
alike. Anything else — another path, a malformed or oversized body, a missing or wrong
key, a foreign member — goes to the app unchanged with the body it read replayed: its
answer is then the app's own, problem+json included. Nothing is queued before the
request is known to be ordinary, so a hand-over never decides twice.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from api.deps import DELIVERY_ROLES
from api.problems import ledger_problem
from api.routes.access import AccessCheck, answer, share_request
from ledger.access import CheckResult
from ledger.errors import LedgerError
from ledger.instance import Instance

PATH = "/v1/access/check"
MAX_BODY = 16 * 1024
"""Bodies larger than this go to the app (a real check is a few hundred bytes)."""

_JSON_HEADERS = [(b"content-type", b"application/json")]


class LibshareApp(FastAPI):
    """The FastAPI app, answering ordinary access checks before its own machinery runs."""

    fast_checks = 0
    """Checks answered by the fast path since start (the rest went through the route)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await super().__call__(scope, receive, send)
            return
        body, complete, replay = await _read_body(receive)
        future = self._start(scope, body) if complete else None
        if future is None:
            await super().__call__(scope, replay, send)
            return
        try:
            result: CheckResult = await future
        except LedgerError as exc:  # e.g. an unknown resource, or the database is down
            await ledger_problem(exc)(scope, receive, send)
            return
        self.fast_checks += 1
        payload = answer(result).model_dump_json().encode()
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _start(self, scope: Scope, body: bytes) -> asyncio.Future[CheckResult] | None:
        """Queue the check if the request is ordinary; None hands it to the app."""
        instance: Instance | None = getattr(self.state, "instance", None)
        if instance is None:
            return None
        token = None
        json_body = False
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].strip().decode("latin-1")
            elif name == b"content-type":
                json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        if token is None or not json_body:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[CheckResult] = loop.create_future()

        def done(outcome: CheckResult | BaseException) -> None:  # on the writer thread
            loop.call_soon_threadsafe(_settle, future, outcome)

        try:
            principal = instance.apikeys.authenticate(token)
            if principal.role not in DELIVERY_ROLES:
                return None
            check = AccessCheck.model_validate_json(body)
            request = share_request(instance, check, principal)
            instance.access.submit_to(request, done, grant_to=principal.key_id)
        except (LedgerError, ValidationError):  # e.g. the service is closing: the app answers
            return None
        return future


async def _read_body(receive: Receive) -> tuple[bytes, bool, Receive]:
    """Read up to :data:`MAX_BODY`; return it, whether it is whole, and a replaying receive."""
    chunks: list[bytes] = []
    size = 0
    more = True
    pending: list[Message] = []
    while more and size <= MAX_BODY:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            pending.append(message)
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    complete = not more and not pending
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            if pending:
                return pending[0]
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return body, complete, replay


def _settle(future: asyncio.Future[CheckResult], outcome: CheckResult | BaseException) -> None:
    if future.cancelled():  # the client went away
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
