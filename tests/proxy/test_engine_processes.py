"""`strangler proxy` as real processes: workers on one port, SIGHUP, a killed worker, SIGTERM,
and 50 MB bodies streamed both ways with bounded proxy memory."""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from pathlib import Path

import aiohttp

from tests.proxy.harness import (client, eventually, proxy_process, rss_kib, rules_doc,
                                 write_rules)
from tests.proxy.upstreams import upstream

FIFTY_MB = 50 * 1024 * 1024


async def status_of(http, proxy) -> dict:
    async with http.get(proxy.admin_url + "/admin/status", headers=proxy.auth) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_two_workers_sighup_killed_worker_and_totals(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url, service.url, stage="legacy"))
        async with proxy_process(rules, 2, tmp_path / "proxy.log") as (proxy, proc), \
                client() as http:
            for i in range(40):                   # new connections: spread over both workers
                async with http.get(f"{proxy.url}/api/products/{i}",
                                    headers={"Connection": "close"}) as resp:
                    assert (await resp.json())["server"] == "legacy"

            async def totals_counted():
                async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                    text = await resp.text()
                line = [l for l in text.splitlines() if l.startswith("strangler_requests_total{")]
                assert sum(float(l.rsplit(" ", 1)[1]) for l in line) == 40, text
            await eventually(totals_counted)
            status = await status_of(http, proxy)
            pids = [w["pid"] for w in status["workers"]]
            assert len(set(pids)) == 2 and all(w["alive"] for w in status["workers"])

            # SIGHUP under load: every worker swaps to the new rules, no request fails.
            codes: list[int] = []
            stop = asyncio.Event()

            async def load():
                while not stop.is_set():
                    async with http.get(proxy.url + "/api/products/1") as resp:
                        await resp.read()
                        codes.append(resp.status)

            loaders = [asyncio.create_task(load()) for _ in range(3)]
            write_rules(rules, rules_doc(legacy.url, service.url, stage="cutover"))
            proc.send_signal(signal.SIGHUP)

            async def all_on_service():
                for _ in range(10):
                    async with http.get(proxy.url + "/api/products/1",
                                        headers={"Connection": "close"}) as resp:
                        assert (await resp.json())["server"] == "service"
            await eventually(all_on_service)
            stop.set()
            await asyncio.gather(*loaders)
            assert len(codes) > 10 and set(codes) == {200}

            # A crashed worker is restarted; once it is gone (connections the kernel had queued
            # to it die with it), the port keeps answering from the other worker meanwhile.
            os.kill(pids[0], signal.SIGKILL)

            async def gone():
                status = Path(f"/proc/{pids[0]}/status")
                assert not status.exists() or "\nState:\tZ" in status.read_text()
            await eventually(gone)
            # A reload while it restarts is fine: the live worker swaps, the restarting one
            # loads the file as it starts (it comes back only after a back-off and a spawn).
            write_rules(rules, rules_doc(legacy.url, service.url, stage="cutover",
                                         prefixes=("/api/", "/v2/")))
            async with http.post(proxy.admin_url + "/admin/reload", headers=proxy.auth) as resp:
                reloaded = await resp.json()
            assert resp.status == 200, reloaded
            assert reloaded["ok"] and reloaded["restarting_workers"] == [0], reloaded
            # (a fresh client: `http` still pools keep-alive connections to the dead worker)
            async with client(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                for _ in range(20):
                    async with fresh.get(proxy.url + "/echo") as resp:
                        assert resp.status == 200

            async def restarted():
                st = await status_of(http, proxy)
                worker = st["workers"][0]
                assert worker["restarts"] == 1 and worker["alive"] and worker["pid"] != pids[0]
                assert worker["rules_version"] == st["rules"]["version"] == reloaded["version"]
                assert not worker["restarting"] and st["rules"]["last_reload_error"] is None
                return st
            await eventually(restarted)
        assert proc.returncode == 0


async def test_sigterm_finishes_in_flight_requests(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        async with proxy_process(rules, 1, tmp_path / "proxy.log") as (proxy, proc), \
                client() as http:
            slow = asyncio.create_task(http.get(proxy.url + "/slow?delay=1"))
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            resp = await slow
            assert resp.status == 200 and (await resp.json())["slow"] is True
            await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
        assert proc.returncode == 0


async def test_50mb_upload_and_download_stream_with_bounded_memory(tmp_path):
    async with upstream("legacy") as legacy:
        rules = write_rules(tmp_path / "r.yaml", rules_doc(legacy.url))
        # --workers 0: the data path runs in the one process whose memory we read.
        async with proxy_process(rules, 0, tmp_path / "proxy.log") as (proxy, proc), \
                client() as http:
            async with http.get(proxy.url + "/echo") as resp:
                assert resp.status == 200
            baseline = rss_kib(proc.pid)
            peak = baseline

            async def watch_rss():
                nonlocal peak
                while True:
                    peak = max(peak, rss_kib(proc.pid))
                    await asyncio.sleep(0.05)

            watcher = asyncio.create_task(watch_rss())
            block = bytes(range(256)) * 256          # 64 KiB

            async def body():
                for _ in range(FIFTY_MB // len(block)):
                    yield block
            expected = hashlib.sha256(block * (FIFTY_MB // len(block))).hexdigest()
            async with http.post(proxy.url + "/upload", data=body()) as resp:   # chunked upload
                answer = await resp.json()
            assert answer == {"server": "legacy", "size": FIFTY_MB, "sha256": expected}
            async with http.post(proxy.url + "/upload", data=body(),
                                 headers={"Content-Length": str(FIFTY_MB)}) as resp:
                assert (await resp.json())["size"] == FIFTY_MB
            for query in ("", "&length=1"):          # chunked and Content-Length downloads
                received = 0
                async with http.get(f"{proxy.url}/big?size={FIFTY_MB}{query}") as resp:
                    async for chunk in resp.content.iter_chunked(1 << 16):
                        received += len(chunk)
                        await asyncio.sleep(0) if received % (1 << 22) else await asyncio.sleep(0.01)
                assert received == FIFTY_MB
            watcher.cancel()
    growth_mib = (peak - baseline) / 1024
    print(f"proxy RSS: baseline {baseline} KiB, peak {peak} KiB")
    assert growth_mib < 16, f"proxy RSS grew {growth_mib:.1f} MiB while streaming 50 MB bodies"
