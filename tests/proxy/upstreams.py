"""Real upstream HTTP servers on loopback for the proxy tests (aiohttp, free ports).

One app covers what the proxy must pass through: echo of method/target/headers/body, slow
answers, chosen status codes, big bodies (Content-Length or chunked), uploads hashed while
streaming, redirects, 100-continue, WebSocket echo, and gzip bytes that must not be decoded.
Each server counts the requests it received per path, so tests can prove "never replayed".
"""
from __future__ import annotations

import asyncio
import gzip
import hashlib
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from tests.conftest import free_port

HITS = web.AppKey("hits", Counter)
NAME = web.AppKey("name", str)
CHUNK = 64 * 1024


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response({
        "server": request.app[NAME], "method": request.method, "target": request.path_qs,
        "headers": [[k, v] for k, v in request.headers.items()], "body_len": len(body),
        "body": body.decode("latin-1") if len(body) < 4096 else "",
    })


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("delay", "1")))
    return web.json_response({"server": request.app[NAME], "slow": True})


async def status(request: web.Request) -> web.Response:
    """The status asked for; with ?on=NAME only on the server called NAME (200 elsewhere)."""
    code = int(request.match_info["code"])
    if request.query.get("on", request.app[NAME]) != request.app[NAME]:
        code = 200
    return web.json_response({"server": request.app[NAME], "status": code}, status=code)


async def big(request: web.Request) -> web.StreamResponse:
    """`size` bytes of a repeating pattern; chunked unless ?length=1."""
    size = int(request.query["size"])
    resp = web.StreamResponse()
    if request.query.get("length"):
        resp.content_length = size
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    block = bytes(range(256)) * (CHUNK // 256)
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    return resp


async def upload(request: web.Request) -> web.Response:
    """Hash the body as it streams in (never holds it whole)."""
    digest = hashlib.sha256()
    total = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        total += len(chunk)
    return web.json_response({"server": request.app[NAME], "size": total,
                              "sha256": digest.hexdigest()})


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo?redirected=1", headers={"Set-Cookie": "a=1; Path=/"})


async def gzipped(request: web.Request) -> web.Response:
    return web.Response(body=gzip.compress(b'{"compressed": true}'),
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})


async def hop(request: web.Request) -> web.Response:
    """An answer carrying hop-by-hop headers the proxy must remove."""
    return web.Response(text="hop", headers={"Connection": "keep-alive, X-Private",
                                             "X-Private": "secret", "Keep-Alive": "timeout=5",
                                             "Proxy-Authenticate": "Basic", "X-Public": "yes"})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str("echo:" + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


@web.middleware
async def count_hits(request: web.Request, handler):
    request.app[HITS][f"{request.method} {request.path}"] += 1
    return await handler(request)


def make_app(name: str) -> web.Application:
    app = web.Application(middlewares=[count_hits], client_max_size=1 << 30)
    app[HITS] = Counter()
    app[NAME] = name
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/api/fail/{code}", status)
    app.router.add_route("*", "/api/slow", slow)
    app.router.add_route("*", "/api/{tail:.*}", echo)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_post("/upload", upload)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/hop", hop)
    app.router.add_get("/ws", websocket)
    return app


@dataclass
class Upstream:
    name: str
    port: int
    app: web.Application
    runner: web.AppRunner | None = None
    hits: Counter = field(default_factory=Counter)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Kill it: the port stops answering (connections are refused)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@asynccontextmanager
async def upstream(name: str):
    app = make_app(name)
    server = Upstream(name, free_port(), app, hits=app[HITS])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
