"""Running one of the bundled aiohttp apps (legacy shop, catalog service) in the foreground.

Both are run the same way: no banner (the demo prints one table for everything it starts; a
banner per child only repeats it), no access log, and a taken port is one operator error
naming the port and the flag that moves it, not a traceback.
"""
from __future__ import annotations

import os

from aiohttp import web

from strangler.errors import OperatorError


def serve_app(app: web.Application, host: str, port: int) -> None:
    """Serve until SIGINT/SIGTERM."""
    try:
        web.run_app(app, host=host, port=port, print=None, access_log=None)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OperatorError(f"cannot listen on {host}:{port} ({reason}); "
                            "stop whatever holds it or pass --port") from None


CLIENT_CLOSED = 499         # nginx's "client closed request": never sent, only logged/counted


def client_went_away(request: web.Request, exc: BaseException) -> bool:
    """EXC is the client hanging up mid-request (reading its body raised ConnectionResetError
    and its connection is closed): not a server fault, so no traceback and no 500. A
    ConnectionError from elsewhere, such as the database's socket, is one and stays a 500."""
    transport = request.transport
    return isinstance(exc, ConnectionError) and (transport is None or transport.is_closing())


def client_went_away_response(request: web.Request, log, request_id: str) -> web.Response:
    log.info("client went away: %s %s (request id %s); nothing answered",
             request.method, request.path, request_id)
    return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")

