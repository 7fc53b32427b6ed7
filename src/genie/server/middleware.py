"""What wraps every request: the bearer-token check, the accounting of each request, and
(in tests only) a deliberate delay.

The token check wraps each endpoint (so unknown routes still answer 404 without a
token), compares in constant time, and answers what an endpoint raised unexpectedly
as a 500 itself.  The accounting is pure ASGI, so it sees the bytes as they cross the
wire and the final status, including 404s and bodies refused as too large.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genie.errors import AuthError
from genie.server.bodies import DIRECT_BYTES_KEY
from genie.server.failures import ANSWERED, ERROR_TYPE_KEY, EXCEPTION_HANDLERS, on_unexpected
from genie.server.sessions import session_of
from genie.server.state import ServerState, state_of

__all__ = ["COMPUTE_MS_KEY", "AccountingMiddleware", "DebugDelayMiddleware", "DirectRoutes", "Endpoint",
           "authorized"]

#: Where a request keeps its compute time for the stats (``scope["state"]``).
COMPUTE_MS_KEY = "genie_compute_ms"

Endpoint = Callable[[Request], Awaitable[Response]]


def authorized(endpoint: Endpoint) -> Endpoint:
    """Require ``Authorization: Bearer <token>`` when the server has a token; then the
    request counts as activity of its session (``X-Genie-Session``) while it runs."""

    async def guarded(request: Request) -> Response:
        state = state_of(request)
        token = state.config.token
        if token is not None:
            # Header values arrive as bytes (read as latin-1): compare those very bytes
            # with the token, which is ASCII (``genie.server.config.check_token``).
            given = request.headers.get("authorization", "").encode("latin-1")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value,
                                                                      token.encode("ascii")):
                raise AuthError("missing or wrong bearer token: send "
                                "'Authorization: Bearer <token>' (--token / GENIE_TOKEN)")
        try:
            with state.store.active(session_of(request)):
                return await endpoint(request)
        except ANSWERED:
            raise  # their handlers answer them
        except Exception as exc:
            # Answered here, not by the app-wide handler: Starlette re-raises what that
            # handler answers, and uvicorn then closes the connection, which can reset
            # it before the client has read the 500.
            return await on_unexpected(request, exc)

    guarded.__name__ = endpoint.__name__
    return guarded


class AccountingMiddleware:
    """Counts every request once: endpoint, status, error type, bytes, latency."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})
        seen = {"in": 0, "out": 0, "status": 500, "recorded": False}

        def record() -> None:
            # Recorded before the last body byte is handed to the server, so a client
            # that has its whole reply always finds this request in the next /stats.
            if seen["recorded"]:
                return
            seen["recorded"] = True
            route = scope.get("route")
            endpoint = f"{scope['method']} {getattr(route, 'path', None) or 'unmatched'}"
            state = scope["state"]
            app_state: ServerState = scope["app"].state.genie
            app_state.stats.record(
                endpoint, status=seen["status"], error_type=state.get(ERROR_TYPE_KEY),
                bytes_in=seen["in"] + state.get(DIRECT_BYTES_KEY, 0), bytes_out=seen["out"],
                latency_ms=(time.perf_counter() - start) * 1000,
                compute_ms=state.get(COMPUTE_MS_KEY, 0.0))

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    record()
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            scope["state"][ERROR_TYPE_KEY] = "internal"
            raise
        finally:
            record()  # no complete reply was sent (error, disconnect): count it anyway


class DebugDelayMiddleware:
    """Test-only (``--debug-delay-ms``): every HTTP request sleeps ``delay_s`` before it is
    handled.  An ``asyncio.sleep``, so other requests go on meanwhile and no compute slot or
    body budget is held; the delay is inside the accounted latency, as a slow server's would be.
    """

    def __init__(self, app: ASGIApp, delay_s: float) -> None:
        self.app = app
        self.delay_s = delay_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


class DirectRoutes:
    """Pure ASGI: the hot routes (``POST /execute``, ``/echo``, ``/graph``) called
    straight, without Starlette's router and exception middleware in between.

    Matching 17 routes' patterns, and the layers of wrappers around each call and
    each ``send``, cost about 60 us of a small ``/execute`` (py-spy).  The endpoint is
    the very ``authorized`` one the router would call, its errors answered by the
    same handlers (``EXCEPTION_HANDLERS``, found by class as Starlette finds them), and
    ``scope["route"]`` set as the router sets it, so the accounting names it alike.
    Every other request goes on to the app.
    """

    def __init__(self, app: ASGIApp, routes: list[Route]) -> None:
        self.app = app
        self.routes = {(method, r.path): r for r in routes for method in r.methods or ()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (self.routes.get((scope["method"], scope["path"]))
                 if scope["type"] == "http" else None)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope.setdefault("path_params", {})
        request = Request(scope, receive, send)
        # What the handlers answer is answered here; anything else an endpoint raises
        # was already answered by ``authorized`` (a 500), or goes on up as it would
        # through Starlette.
        try:
            response = await route.endpoint(request)
        except ANSWERED as exc:
            handler = next(EXCEPTION_HANDLERS[cls] for cls in type(exc).__mro__
                           if cls in EXCEPTION_HANDLERS)
            response = await handler(request, exc)
        await response(scope, receive, send)
