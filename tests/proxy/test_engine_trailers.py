"""A chunked body's trailers are never forwarded: they reached the upstream as real headers (a
second Host, an X-Forwarded-Host of the client's choosing) whenever the head was built after
they were parsed."""
from __future__ import annotations

import asyncio
import json

import pytest

from proxy.settings import Limits
from tests.proxy.harness import rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream


@pytest.mark.parametrize("buffer_up_to", [0, 64 * 1024], ids=["streamed", "over-the-buffer"])
async def test_trailers_never_reach_the_upstream(tmp_path, buffer_up_to):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=Limits(buffer_body_bytes=buffer_up_to)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            chunk = b"A" * 70000
            writer.write(b"POST /echo HTTP/1.1\r\nHost: good.example\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         + b"%x\r\n%b\r\n" % (len(chunk), chunk)
                         + b"0\r\nHost: evil.example\r\nX-Injected: yes\r\n")
            await writer.drain()
            await asyncio.sleep(0.3)             # the head may be built meanwhile
            writer.write(b"\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    echoed = json.loads(body.split(b"\r\n", 1)[1] if b"Transfer-Encoding" in head else body)
    names = [k.lower() for k, _ in echoed["headers"]]
    assert names.count("host") == 1 and "x-injected" not in names, echoed["headers"]
    assert dict((k.lower(), v) for k, v in echoed["headers"])["host"] == "good.example"
    assert echoed["body_len"] == len(chunk)
