"""`strangler status` over the rule file alone and with real proxies: live figures per side, each
proxy's rules version, a proxy on other rules marked."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from proxy.rules import load_table
from tests.conftest import free_port
from tests.operate.live_harness import (OVERRIDE_SECRET, requests_on, service_requests,
                                        token_file, traffic, upstream, wait_for, write_rules)
from tests.proxy.harness import proxy_process


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.setenv("STRANGLER_OVERRIDE_SECRET", OVERRIDE_SECRET)
    monkeypatch.delenv("STRANGLER_PROXIES", raising=False)


def test_status_without_proxies_shows_the_rules_and_dashes(tmp_path: Path, cli):
    rules = write_rules(tmp_path / "rules" / "canary.yaml", free_port(), free_port(), percent=10)
    result = cli("status", "--rules", str(rules))
    assert result.code == 0, result.err
    header, row = result.out.splitlines()[:2]
    assert header.split()[:4] == ["CAPABILITY", "STAGE", "WRITES", "PERCENT"]
    assert row.split()[:6] == ["catalog", "canary", "legacy", "10", "->", "50"]
    assert "- | -" not in row and row.split()[6:10] == ["-", "-", "-", "-"]
    assert "no proxy given" in result.out
    assert "\033[" not in result.out            # not a terminal: no colour
    doc = json.loads(cli("status", "--rules", str(rules), "--json").out)
    assert doc["proxies"] == [] and doc["capabilities"][0]["figures"] is None
    assert doc["capabilities"][0]["next_step"] == 50


async def test_status_sums_live_figures_and_marks_a_proxy_on_old_rules(tmp_path: Path, cli,
                                                                       monkeypatch):
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=10)
        old = tmp_path / "old" / "canary.yaml"
        old.parent.mkdir()
        shutil.copy(rules, old)
        write_rules(rules, legacy, service, percent=50)     # the file moved on; `old` did not
        async with proxy_process(rules, workers=2, log=tmp_path / "a.log") as (a, _), \
                proxy_process(old, workers=2, log=tmp_path / "b.log") as (b, _):
            monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", a.token)
            monkeypatch.setenv("STRANGLER_PROXIES", a.admin_url)
            await traffic(a, 30, pin="service")
            await traffic(a, 20, pin="legacy")
            await wait_for(a, lambda s: service_requests(s) >= 30
                           and requests_on(s, "legacy") >= 20, "figures")
            result = cli("status", "--rules", str(rules))
            assert result.code == 0, result.err
            row = result.out.splitlines()[1]
            assert row.split()[:6] == ["catalog", "canary", "legacy", "50", "->", "100"]
            assert "0.00 | 0.00" in row                  # error rates, legacy | service
            assert row.split()[-1] == "pass"
            version = load_table(rules, environ={}).version
            assert f"proxy {a.admin_url} serves rules {version}\n" in result.out

            doc = json.loads(cli("status", "--rules", str(rules), "--json").out)
            figures = doc["capabilities"][0]["figures"]
            assert (figures["legacy"]["requests"], figures["service"]["requests"]) == (20, 30)
            assert doc["capabilities"][0]["verdict"]["state"] == "pass"

            # Proxy b serves the old copy: its own token, and it stands out.
            monkeypatch.setenv("STRANGLER_PROXIES", f"{a.admin_url},{b.admin_url}")
            both = cli("status", "--rules", str(rules), "--token-file", token_file(tmp_path, b))
            assert both.code == 2 and f"the admin token was refused by {a.admin_url}" in both.err
            assert f"proxy {b.admin_url} serves rules" in both.out    # the one that answered

            # A proxy that is down leaves the others' figures shown, and says so.
            dead = f"http://127.0.0.1:{free_port()}"
            partial = cli("status", "--rules", str(rules), "--proxy", a.admin_url,
                          "--proxy", dead)
            assert partial.code == 2
            assert partial.err.splitlines() == [
                f"strangler: error: proxy at {dead} is unreachable (connection refused); is it "
                "running? start it with `strangler proxy ...` or pass --proxy (the live columns "
                "leave it out)"]
            assert partial.out.splitlines()[1].split()[-1] == "pass"   # a's figures, judged
            doc = json.loads(cli("status", "--rules", str(rules), "--proxy", a.admin_url,
                                 "--proxy", dead, "--json").out)
            assert [p["url"] for p in doc["proxies"]] == [a.admin_url]
            assert [p["url"] for p in doc["unreachable"]] == [dead]
            monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", b.token)
            only_b = cli("status", "--rules", str(rules), "--proxy", b.admin_url, "--json")
            [proxy] = json.loads(only_b.out)["proxies"]
            assert proxy["stale"] and proxy["version"] == load_table(old, environ={}).version
            text = cli("status", "--rules", str(rules), "--proxy", b.admin_url).out
            assert f"proxy {b.admin_url} serves rules {proxy['version']}  OLD RULES" in text


def test_every_live_command_explains_itself(cli, capsys):
    for command, words in (("status", "OLD RULES"), ("promote", "exit 3"),
                           ("report", "hand-over document")):
        with pytest.raises(SystemExit) as done:
            cli(command, "--help")
        assert done.value.code == 0
        assert words in capsys.readouterr().out


def test_cdc_lag_follows_the_write_owner_of_the_rules_in_hand(tmp_path: Path, monkeypatch):
    """The CDC file names other rules (still `writes: legacy`) than the ones an operator or the
    proxy works with (`writes: service`): the lag judged is the direction those rules need."""
    import cdc.config
    from cdc.mapping import TO_LEGACY
    from cdc.pipeline import Pipeline
    from operate.status import cdc_lag_s
    from strangler.db import sqlite_url
    from tests.cdc.cdc_apply_helpers import (create_legacy_schema, create_service_schema,
                                             execute, wait_streaming, write_config)
    legacy, service = sqlite_url(tmp_path / "legacy.db"), sqlite_url(tmp_path / "service.db")
    create_legacy_schema(legacy)
    create_service_schema(service)
    other = write_rules(tmp_path / "other-rules.yaml", free_port(), free_port(), percent=10)
    config = write_config(tmp_path, "catalog", legacy, service)
    config.write_text(config.read_text().replace("writes: legacy", f"rules: {other.name}"))
    monkeypatch.setattr(cdc.config, "RULES_DIR", tmp_path)
    in_hand = write_rules(tmp_path / "rules.yaml", free_port(), free_port(), percent=10)
    in_hand.write_text(in_hand.read_text().replace("writes: legacy", "writes: service"))
    owned_by_service = load_table(in_hand).capabilities[0]
    pipeline = Pipeline(cdc.config.load_config("catalog"), [TO_LEGACY]).start()
    try:
        wait_streaming(pipeline)
        execute(service, "INSERT INTO categories (slug, display_name) VALUES ('local', 'Local')")
        deadline = time.monotonic() + 30
        while cdc_lag_s(owned_by_service) is None:        # until service -> legacy applied it
            assert time.monotonic() < deadline, "no lag measured for service -> legacy"
            time.sleep(0.2)
    finally:
        pipeline.close()
    assert cdc_lag_s(load_table(other).capabilities[0]) is None   # legacy -> service never ran


async def test_status_shows_the_default_backend_and_keeps_live_figures_when_the_file_breaks(
        tmp_path: Path, cli, monkeypatch):
    """Checkouts go to the default backend (no capability matches them): their traffic has a
    row. A rule file broken by a hand edit still shows the live figures, over the newest
    recorded rules, under the error: an incident is when they matter most."""
    import aiohttp
    async with upstream("legacy") as (legacy, _), upstream("service") as (service, _):
        rules = write_rules(tmp_path / "rules" / "canary.yaml", legacy, service, percent=10)
        assert cli("rollout", "catalog", "20", "--rules", str(rules)).code == 0   # recorded
        async with proxy_process(rules, workers=1, log=tmp_path / "a.log") as (a, _):
            monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", a.token)
            monkeypatch.setenv("STRANGLER_PROXIES", a.admin_url)
            for i in range(12):         # what no capability matches: the default backend's
                async with aiohttp.request("POST", f"{a.url}/checkout/{i}") as resp:
                    await resp.read()
            await wait_for(a, lambda s: (s["gates"].get("default") or {}).get(
                "legacy", {}).get("requests", 0) >= 12, "default figures")
            result = cli("status", "--rules", str(rules))
            assert result.code == 0, result.err
            default = next(line for line in result.out.splitlines()
                           if line.startswith("(default: legacy)"))
            # STAGE, WRITES, PERCENT "-"; legacy req/min and 0.00 % errors; no service side
            assert default.split()[2:5] == ["-", "-", "-"] and "0.00 | -" in default
            rules.write_text(rules.read_text().replace("stage: canary", "stage: [canary"))
            broken = cli("status", "--rules", str(rules))
            assert broken.code == 0, broken.err
            assert broken.out.startswith("the rule file does not compile, so no proxy can load "
                                         "it; showing the rules of recorded change #1")
            assert any(line.startswith("catalog ") and "canary" in line
                       for line in broken.out.splitlines())
            doc = json.loads(cli("status", "--rules", str(rules), "--json").out)
            assert doc["rules"]["error"] and doc["default"]["figures"]["legacy"]["requests"] >= 12
