"""A slow shadow target: the benchmark's JSON answer, each after a fixed delay.

The shadow benchmark's overload run points shadows at it so the shadow queue fills and the
dispatcher must shed; nginx cannot wait before answering without extra modules. It costs next to
no CPU (a sleeping coroutine per request), so it does not steal the proxy's cores.

    python -m benchmarks.slow_upstream --listen 127.0.0.1:PORT --delay-ms 200
"""
from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from benchmarks.upstream import BODY

DELAY = web.AppKey("delay", float)


async def answer(request: web.Request) -> web.Response:
    await asyncio.sleep(request.app[DELAY])
    return web.Response(text=BODY, content_type="application/json")


def make_app(delay_s: float) -> web.Application:
    app = web.Application()
    app[DELAY] = delay_s
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slow_upstream", description=__doc__)
    parser.add_argument("--listen", required=True, help="HOST:PORT to serve on")
    parser.add_argument("--delay-ms", type=float, default=200.0, help="wait before answering")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    web.run_app(make_app(args.delay_ms / 1000), host=host, port=int(port), access_log=None,
                print=None)


if __name__ == "__main__":
    main()
