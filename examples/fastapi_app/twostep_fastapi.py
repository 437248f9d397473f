"""FastAPI glue for twostep: the one file to copy into a FastAPI application.

- The bearer token is the twostep session token; :func:`current_session` checks it
  with ``TwoStep.check_session`` on every request (R21, R41: ended sessions stop at once).
- Every response is sent with ``Cache-Control: no-store`` (:class:`NoStore`): answers
  carry session tokens, login challenges, enrolment secrets and backup codes. No
  cookie is set: the client keeps the token.
- Every twostep error becomes an HTTP status and a JSON body
  ``{"error": <reason>, "type": <error class>, "message": ...}`` (R61):

  ==================  ======  ==================================================
  error               status  notes
  ==================  ======  ==================================================
  InvalidInput        422     FastAPI's own validation errors get the same shape
  InvalidCredentials  400     401 is kept for "your bearer token is not valid",
  InvalidCode         400     so a client can treat every 401 as "log in again";
                              ``attempts_left`` when a login challenge counted it
  SessionInvalid      401     ``WWW-Authenticate: Bearer``; also a missing token
  NotAllowed          403     ``rule`` names the rule that refused (R20-R50)
  UnknownUser         404
  EmailTaken          409
  ChallengeExpired    410     the login challenge is gone: start at POST /login
  Throttled           429     ``Retry-After`` header and ``retry_after`` (R6)
  ==================  ======  ==================================================
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import twostep as ts

STATUS: dict[type[ts.TwoStepError], int] = {
    ts.InvalidInput: 422,
    ts.InvalidCredentials: 400,
    ts.InvalidCode: 400,
    ts.SessionInvalid: 401,
    ts.NotAllowed: 403,
    ts.UnknownUser: 404,
    ts.UnknownAccount: 404,
    ts.EmailTaken: 409,
    ts.ChallengeExpired: 410,
    ts.Throttled: 429,
    ts.ConfigurationError: 500,
    ts.StoreError: 503,
}

bearer = HTTPBearer(auto_error=False, description="The session token from POST /login.")


class NoStore:
    """ASGI middleware: ``Cache-Control: no-store`` on every HTTP response.

    Tokens, challenges, secrets and backup codes come back in JSON bodies, which no
    browser or proxy cache may keep; marking every response is simpler than listing
    the routes that carry one, and cannot miss a new route. It sits outside the
    exception handlers, so error responses are marked too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_no_store)


def install(app: FastAPI, service: ts.TwoStep) -> None:
    """Make ``service`` the app's twostep, map its errors to responses, cache nothing."""
    app.state.twostep = service
    app.add_middleware(NoStore)
    app.add_exception_handler(ts.TwoStepError, error_response)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_response)  # type: ignore[arg-type]


def get_service(request: Request) -> ts.TwoStep:
    service: ts.TwoStep = request.app.state.twostep
    return service


def client_of(request: Request) -> str | None:
    """The key twostep throttles per client (R6): here the peer's address."""
    return request.client.host if request.client is not None else None


def current_session(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ts.Session:
    """The caller's session, checked on every request; 401 if missing or ended."""
    if credentials is None:
        msg = "no bearer token: log in first"
        raise ts.SessionInvalid(msg, reason="missing_token")
    return get_service(request).check_session(credentials.credentials)


Service = Annotated[ts.TwoStep, Depends(get_service)]
CurrentSession = Annotated[ts.Session, Depends(current_session)]


def error_body(error: ts.TwoStepError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error.reason,
        "type": type(error).__name__,
        "message": str(error),
    }
    if isinstance(error, ts.NotAllowed):
        body["rule"] = error.rule
    if isinstance(error, ts.Throttled):
        body["retry_after"] = error.retry_after
    if isinstance(error, ts.InvalidCode) and error.attempts_left is not None:
        body["attempts_left"] = max(error.attempts_left, 0)
    return body


def error_response(_: Request, error: ts.TwoStepError) -> JSONResponse:
    status = next((s for kind, s in STATUS.items() if isinstance(error, kind)), 400)
    headers: dict[str, str] = {}
    if isinstance(error, ts.Throttled):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, ts.SessionInvalid):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return JSONResponse(error_body(error), status_code=status, headers=headers)


def validation_response(_: Request, error: RequestValidationError) -> JSONResponse:
    # Pydantic echoes the refused input; a password or a code must not come back.
    details = [{k: v for k, v in e.items() if k not in {"input", "ctx"}} for e in error.errors()]
    body = {
        "error": "invalid_input",
        "type": "InvalidInput",
        "message": "the request body or parameters are not valid",
        "detail": jsonable_encoder(details),
    }
    return JSONResponse(body, status_code=422)
