"""The HTML report opened in headless Chromium (Debian `chromium`): what a person sees, and
proof that the page fetches nothing from the network."""
from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from proxy.shadow.formats import render
from proxy.shadow.report import build_report
from proxy.shadow.store import ShadowStore
from tests.proxy.shadow.shadow_helpers import fill

ROOT = Path(__file__).resolve().parents[3]
BROWSER_OWN = "not an origin"  # initiator of Chromium's own background requests


class VisibleText(HTMLParser):
    """Text a reader sees: everything outside <style>, <script> and <title>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        self._hidden += tag in ("style", "script", "title")

    def handle_endtag(self, tag):
        self._hidden -= tag in ("style", "script", "title")

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def open_in_chromium(page: Path, tmp: Path) -> tuple[str, list[str]]:
    """The rendered DOM, and the URLs the page itself asked for (from Chromium's net log)."""
    subprocess.run([str(ROOT / "scripts" / "chromium.sh")], check=True)
    profile, netlog = tmp / f"profile-{page.stem}", tmp / f"{page.stem}.netlog.json"
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}",
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # never leave the host
         f"--log-net-log={netlog}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60, check=True)
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requested = [e["params"]["url"] for e in log["events"]
                 if e["type"] == start_job and "url" in e.get("params", {})
                 and e["params"].get("initiator") != BROWSER_OWN]
    return done.stdout, requested


def test_report_page_shows_rates_routes_fields_and_needs_no_network(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    store.create_schema()
    fill(store, n=40)
    store.flush()
    page = tmp_path / "report.html"
    page.write_text(render(build_report(store, now=1_800_000_100), "html"), encoding="utf-8")
    store.close()

    dom, requested = open_in_chromium(page, tmp_path)
    parser = VisibleText()
    parser.feed(dom)
    text = parser.text
    assert "Capability catalog: 50.00 % match (40/80)" in text
    assert "/api/products/{id} 0.00 % 0/40" in text
    assert "/api/categories 100.00 % 40/40" in text
    assert "$.price reported 100.0 % (40) 0.0 % (0)" in text
    assert "$.generated_at noise 100.0 % (40) 100.0 % (20)" in text
    assert "Sample: $.price — GET /api/products/1" in text
    assert "$.price value 49.99 50.0" in text
    assert "Reproduce against the service: curl -sS -i -X GET http://127.0.0.1:2/api/products/1" \
        in text
    assert "match rate over time" in text and "latency distribution" in text
    assert dom.count("<svg") == 4 and dom.count("<rect") >= 4 and "<polyline" in dom
    assert requested == []


def test_the_network_check_does_see_a_page_request(tmp_path):
    """Control for the check above: a page that loads an image is caught."""
    page = tmp_path / "control.html"
    page.write_text("<!DOCTYPE html><p>control</p><img src='http://127.0.0.1:9/x.png'>")
    dom, requested = open_in_chromium(page, tmp_path)
    assert "control" in dom and requested == ["http://127.0.0.1:9/x.png"]
