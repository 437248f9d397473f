"""Installing twostep in a FastAPI app: the service, errors as responses, no caching."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import twostep as ts

from .. import _i18n
from ._models import STATUS

bearer = HTTPBearer(auto_error=False, description="The session token from POST /login.")


class NoStore:
    """ASGI middleware: ``Cache-Control: no-store`` on every HTTP response (R111).

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


def install(
    app: FastAPI,
    service: ts.TwoStep | ts.AsyncTwoStep,
    *,
    prefix: str = "",
    language: str | None = None,
    executor: Executor | None = None,
) -> ts.AsyncTwoStep:
    """Give ``app`` twostep's API under ``prefix``, its error mapping and ``no-store``.

    A ``TwoStep`` is wrapped in an :class:`~twostep.AsyncTwoStep` (on ``executor``,
    the loop's default one if ``None``), so that no route blocks the event loop.
    ``language`` fixes the language of the errors' ``message``; by default each
    request's ``Accept-Language`` picks one of :data:`LANGUAGES`. Returns the
    ``AsyncTwoStep``, for the host's own routes (also :data:`Service`).
    """
    from ._routes import router

    if language is not None and language not in _i18n.LANGUAGES:
        msg = f"language must be one of {_i18n.LANGUAGES}, not {language!r}"
        raise ValueError(msg)
    if not isinstance(service, ts.AsyncTwoStep):
        service = ts.AsyncTwoStep(service, executor=executor)
    app.state.twostep = service
    app.state.twostep_language = language
    app.add_middleware(NoStore)
    app.add_exception_handler(ts.TwoStepError, error_response)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_response)  # type: ignore[arg-type]
    app.include_router(router, prefix=prefix)
    return service


def get_service(request: Request) -> ts.AsyncTwoStep:
    """The app's ``AsyncTwoStep``."""
    service: ts.AsyncTwoStep = request.app.state.twostep
    return service


def language_of(request: Request) -> str:
    """The language of this request's messages: the app's, or the one the client asks for."""
    state = getattr(request.scope.get("app"), "state", None)
    fixed: str | None = getattr(state, "twostep_language", None)
    return fixed or _i18n.negotiate(request.headers.get("accept-language"))


def client_of(request: Request) -> str | None:
    """The key twostep throttles per client (R6): here the peer's address."""
    return request.client.host if request.client is not None else None


async def current_session(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ts.Session:
    """The caller's session, checked on every request (R21, R41); 401 if missing or ended."""
    if credentials is None:
        msg = "no bearer token: log in first"
        raise ts.SessionInvalid(msg, reason="missing_token")
    return await get_service(request).check_session(credentials.credentials)


Service = Annotated[ts.AsyncTwoStep, Depends(get_service)]
CurrentSession = Annotated[ts.Session, Depends(current_session)]


def error_body(error: ts.TwoStepError, language: str = _i18n.LANGUAGES[0]) -> dict[str, Any]:
    """The JSON body of a refusal (R61): the reason, the error type, a message for people."""
    body: dict[str, Any] = {
        "error": error.reason,
        "type": type(error).__name__,
        "message": _i18n.message(error, _i18n.translations(language)),
    }
    if isinstance(error, ts.NotAllowed):
        body["rule"] = error.rule
    if isinstance(error, ts.Throttled):
        body["retry_after"] = error.retry_after
    if isinstance(error, ts.InvalidCode) and error.attempts_left is not None:
        body["attempts_left"] = max(error.attempts_left, 0)
    return body


def error_response(request: Request, error: ts.TwoStepError) -> JSONResponse:
    """A twostep error as its status (:data:`STATUS`), headers and :func:`error_body`."""
    status = next((s for kind, s in STATUS.items() if isinstance(error, kind)), 400)
    headers: dict[str, str] = {"Content-Language": language_of(request)}
    if isinstance(error, ts.Throttled):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, ts.SessionInvalid):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    body = error_body(error, language_of(request))
    return JSONResponse(body, status_code=status, headers=headers)


def validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's own validation errors, in the shape of ``InvalidInput`` (422)."""
    # Pydantic echoes the refused input; a password or a code must not come back.
    details = [{k: v for k, v in e.items() if k not in {"input", "ctx"}} for e in error.errors()]
    t = _i18n.translations(language_of(request))
    body = {
        "error": "invalid_input",
        "type": "InvalidInput",
        "message": t.gettext("The request body or parameters are not valid."),
        "detail": jsonable_encoder(details),
    }
    return JSONResponse(body, status_code=422, headers={"Content-Language": language_of(request)})
