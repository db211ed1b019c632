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
