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

            async def figures() -> tuple[float, float, float]:
                async with http.get(proxy.admin_url + "/metrics", headers=proxy.auth) as resp:
                    text = await resp.text()
                return tuple(counter(text, f"strangler_shadow_{name}") for name in (
                    "compared_total", "submitted_total", "process_cpu_seconds_total"))

            async def requests_compared(before: float) -> float:
                for i in range(REQUESTS):
                    async with http.get(f"{proxy.url}/api/products/{i}",
                                        headers={"Connection": "close"}) as resp:
                        assert (await resp.json())["server"] == "legacy"

                async def compared():
                    done, submitted, cpu = await figures()
                    assert done == submitted == before + REQUESTS, (done, submitted)
                    return cpu
                return await eventually(compared)

            cpu = await requests_compared(0)
            assert cpu > 0                  # what shadowing costs the host, beside the counts
            first = (await status())["shadow_process"]
            worker_pids = {w["pid"] for w in (await status())["workers"]}
            assert first["alive"] and first["pid"] not in worker_pids | {proc.pid}

            os.kill(first["pid"], signal.SIGKILL)

            async def restarted():
                now = (await status())["shadow_process"]
                assert now["alive"] and now["restarts"] == 1 and now["pid"] != first["pid"]
            await eventually(restarted)

            async def reconnected():        # the workers find the new process's socket
                async with http.get(f"{proxy.url}/api/products/0") as resp:
                    await resp.read()
                await asyncio.sleep(0.3)
                done, submitted, _ = await figures()
                # a probe compared, and none still on its way (a late one would count twice)
                assert done > REQUESTS and done == submitted
                return done
            # its counters start again; the dead one's are kept, so totals still add up
            assert await requests_compared(await eventually(reconnected)) >= cpu
