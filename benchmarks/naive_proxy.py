"""The naive peer: the obvious way to write a reverse proxy in Python with aiohttp.

One process, one `ClientSession`, request and response bodies read whole into memory, hop-by-hop
headers dropped, the default asyncio event loop. Nothing clever: it is the yardstick for what a
straightforward Python proxy costs.

    python -m benchmarks.naive_proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:PORT
"""
from __future__ import annotations

import argparse

from aiohttp import ClientSession, web

# RFC 9110 section 7.6.1 connection-specific headers, plus the ones aiohttp recomputes.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "proxy-authenticate", "proxy-authorization", "host", "content-length",
})

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", ClientSession)


async def forward(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    body = await request.read()
    async with request.app[SESSION].request(
            request.method, request.app[UPSTREAM] + request.path_qs, headers=headers,
            data=body or None, allow_redirects=False) as upstream:
        payload = await upstream.read()
        out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return web.Response(status=upstream.status, headers=out, body=payload)


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")

    async def session_ctx(app: web.Application):
        # Keep bodies byte-for-byte: a proxy must not decompress what it relays.
        app[SESSION] = ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naive_proxy", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--upstream", required=True, help="http://HOST:PORT to forward to")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    web.run_app(make_app(args.upstream), host=host, port=int(port), access_log=None, print=None)


if __name__ == "__main__":
    main()
