"""Raw-socket tests: smuggling attempts, pipelining, refusals and limits."""
from __future__ import annotations

import re

import pytest

from proxy.settings import Limits
from tests.conftest import free_port
from tests.proxy.harness import raw_exchange, rules_doc, running_proxy, write_rules
from tests.proxy.upstreams import upstream

STILL_OPEN = b"<<still open>>"


def statuses(raw: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


SMUGGLING = {
    "cl-and-te": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /echo?smuggled=1 HTTP/1.1\r\n"
                  b"Host: t\r\n\r\n"),
    "te-and-cl": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 6\r\n\r\n0\r\n\r\nGET /echo?smuggled=1 HTTP/1.1\r\nHost: t\r\n\r\n"),
    "duplicate-cl": (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 40\r\n"
                     b"\r\nabcGET /echo?smuggled=1 HTTP/1.1\r\nHost: t\r\n\r\n"),
    "cl-list": b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 3\r\n\r\nabc",
    "te-not-chunked-last": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n"
                            b"\r\n0\r\n\r\n"),
    "bad-chunk-size": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "bare-lf": b"GET /echo HTTP/1.1\nHost: t\n\n",
    "space-before-colon": b"GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length : 5\r\n\r\nhello",
    "obs-fold": b"GET /echo HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n",
    "two-hosts": b"GET /echo HTTP/1.1\r\nHost: t\r\nHost: internal.example\r\n\r\n",
    "no-host": b"GET /echo HTTP/1.1\r\nX-A: a\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
async def test_smuggling_attempts_refused_and_closed(tmp_path, name):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw = await raw_exchange(proxy.port, SMUGGLING[name])
        assert not raw.endswith(STILL_OPEN), f"connection left open: {raw!r}"
        assert statuses(raw) == [400], raw
        assert b"Connection: close" in raw
        assert legacy.hits["GET /echo"] == 0          # nothing smuggled reached the upstream


async def test_pipelined_requests_answered_in_order(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw = await raw_exchange(proxy.port, (
                b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /echo?n=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
                b"GET /status/404 HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /echo?n=4 HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nquery!"
                b"GET /echo?n=5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"))
    assert statuses(raw) == [200, 200, 404, 200, 200]
    assert b'"body": "query!"' in raw           # a body that arrived while its request waited
    first, second, fourth = raw.find(b'"slow"'), raw.find(b"/echo?n=2"), raw.find(b"/echo?n=4")
    assert 0 < first < second < fourth
    assert b'"body": "hello"' in raw


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
])
async def test_not_an_open_proxy(tmp_path, request_bytes, status):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules) as proxy:
            raw = await raw_exchange(proxy.port, request_bytes)
    assert statuses(raw) == [status] and not raw.endswith(STILL_OPEN)
    assert sum(legacy.hits.values()) == 0
    # The proxy's own answers carry a Date (RFC 9110 §6.6.1) and the request's id.
    assert re.search(rb"\r\nDate: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\r\n", raw), raw
    assert re.search(rb"\r\nX-Request-Id: [0-9a-f]{32}\r\n", raw), raw


async def test_error_answer_echoes_the_clients_request_id(tmp_path):
    dead = write_rules(tmp_path / "r.yaml", rules_doc(f"http://127.0.0.1:{free_port()}"))
    async with running_proxy(dead) as proxy:
        raw = await raw_exchange(proxy.port, b"GET /echo HTTP/1.1\r\nHost: t\r\n"
                                             b"X-Request-Id: client-7\r\nConnection: close\r\n\r\n")
    assert statuses(raw) == [502], raw
    assert b"\r\nX-Request-Id: client-7\r\n" in raw and b"\r\nDate: " in raw


LIMITS = Limits(max_header_bytes=2048, max_headers=20, max_body_bytes=10_000)


@pytest.mark.parametrize("case, request_bytes, status", [
    ("header-block", b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n", 431),
    ("long-target", b"GET /echo?" + b"q" * 3000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 431),
    ("header-count", b"GET /echo HTTP/1.1\r\nHost: t\r\n"
                     + b"".join(b"X-%d: 1\r\n" % i for i in range(25)) + b"\r\n", 431),
    ("content-length", b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n", 413),
])
async def test_limits_answer_4xx(tmp_path, case, request_bytes, status):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=LIMITS) as proxy:
            raw = await raw_exchange(proxy.port, request_bytes)
            # The proxy is fine afterwards.
            ok = await raw_exchange(proxy.port, b"GET /echo HTTP/1.1\r\nHost: t\r\n"
                                                b"Connection: close\r\n\r\n")
    assert statuses(raw) == [status], raw
    assert not raw.endswith(STILL_OPEN)
    assert statuses(ok) == [200]


async def test_chunked_body_over_limit_is_413(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with running_proxy(rules, limits=LIMITS) as proxy:
            chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
            raw = await raw_exchange(proxy.port, b"POST /upload HTTP/1.1\r\nHost: t\r\n"
                                     b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 4 + b"0\r\n\r\n")
    assert statuses(raw) == [413], raw
    assert not raw.endswith(STILL_OPEN)
