"""`strangler proxy --workers N`: shadows run in the shadow process, not on the workers' loops.
Workers batch exchanges over a unix socket; the shadow process compares and stores them, its
counters (and its CPU time) reach /metrics, and it is restarted when it dies."""
from __future__ import annotations

import asyncio
import os
import signal

from tests.proxy.harness import client, eventually, proxy_process, rules_doc, write_rules
from tests.proxy.upstreams import upstream

REQUESTS = 30


def counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + "{", name + " ")))


async def test_shadow_process_compares_reports_counters_and_is_restarted(tmp_path):
    async with upstream("legacy") as legacy, upstream("service") as service:
        doc = rules_doc(legacy.url, service.url, stage="shadow")
        doc["capabilities"][0]["shadow"] = {"percent": 100, "timeout": "5s"}
        rules = write_rules(tmp_path / "r.yaml", doc)
        async with proxy_process(rules, 2, tmp_path / "proxy.log") as (proxy, proc), \
                client() as http:
            async def status() -> dict:
                async with http.get(proxy.admin_url + "/admin/status",
                                    headers=proxy.auth) as resp:
                    return await resp.json()

            async def requests_compared(n: int):
                for i in range(REQUESTS):
                    async with http.get(f"{proxy.url}/api/products/{i}",
                                        headers={"Connection": "close"}) as resp:
                        assert (await resp.json())["server"] == "legacy"

                async def compared():
                    async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                        text = await resp.text()
                    assert counter(text, "strangler_shadow_compared_total") == n, text
                    assert counter(text, "strangler_shadow_submitted_total") == n
                    return counter(text, "strangler_shadow_process_cpu_seconds_total")
                return await eventually(compared)

            cpu = await requests_compared(REQUESTS)
            assert cpu > 0                  # what shadowing costs the host, beside the counts
            first = (await status())["shadow_process"]
            worker_pids = {w["pid"] for w in (await status())["workers"]}
            assert first["alive"] and first["pid"] not in worker_pids | {proc.pid}

            os.kill(first["pid"], signal.SIGKILL)

            async def restarted():
                now = (await status())["shadow_process"]
                assert now["alive"] and now["restarts"] == 1 and now["pid"] != first["pid"]
            await eventually(restarted)
            await asyncio.sleep(0.5)         # workers reconnect to the new shadow process
            # its counters start again; the dead one's are kept, so totals still add up
            assert await requests_compared(2 * REQUESTS) >= cpu
