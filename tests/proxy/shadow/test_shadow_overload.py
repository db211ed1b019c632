"""A worker whose event loop is saturated sheds its shadows (counted as dropped, reason
`overload`) and takes them again once the loop has room: overload costs shadows, not clients."""
from __future__ import annotations

import asyncio
import time

import yaml

from proxy.exchange import Exchange
from proxy.rules import check_rules
from proxy.shadow.dispatcher import ShadowDispatcher
from proxy.shadow.saturation import BUSY_WINDOW_S
from proxy.shadow.store import ShadowStore


def exchange(tmp_path) -> Exchange:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({
        "version": 1,
        "backends": {"legacy": {"url": "http://127.0.0.1:9"},
                     "service": {"url": "http://127.0.0.1:10"}},
        "capabilities": [{"name": "catalog", "match": [{"path_template": "/items/{id}"}],
                          "legacy": "legacy", "service": "service", "stage": "shadow",
                          "shadow": {"percent": 100, "sticky": False}}],
        "default": "legacy"}))
    decision = check_rules(rules).table.decide("GET", "/items/7", "", {})
    assert decision.shadow is not None
    return Exchange(decision, "GET", "/items/7", (), b"", 200, (), b"{}", 0.001, time.time())


async def test_a_saturated_loop_sheds_shadows_until_it_has_room_again(tmp_path):
    store = ShadowStore(f"sqlite:///{tmp_path / 'shadow.sqlite3'}")
    # No consumers: what is accepted stays queued, so the counters show each decision alone.
    dispatcher = ShadowDispatcher(store, workers=0, shed_busy_share=0.05)  # low: this machine may be shared
    dispatcher.start()
    ex = exchange(tmp_path)
    dropped = {"capability": "catalog", "reason": "overload"}
    try:
        deadline = time.monotonic() + 30 * BUSY_WINDOW_S
        while not dispatcher.overloaded and time.monotonic() < deadline:
            spin_until = time.thread_time() + 0.01     # the loop burns CPU, as under overload
            while time.thread_time() < spin_until:
                pass
            await asyncio.sleep(0)
        assert dispatcher.overloaded
        dispatcher.submit(ex)
        assert dispatcher.metrics.counter_value("strangler_shadow_dropped_total", dropped) == 1
        await asyncio.sleep(3 * BUSY_WINDOW_S)         # an idle loop: the overload is over
        assert not dispatcher.overloaded
        dispatcher.submit(ex)
        assert dispatcher.metrics.counter_value("strangler_shadow_dropped_total", dropped) == 1
        assert dispatcher.metrics.counter_value("strangler_shadow_submitted_total",
                                                {"capability": "catalog"}) == 1
    finally:
        await dispatcher.close()
