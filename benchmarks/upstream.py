"""The benchmark's upstream: nginx answering every request with the same ~500-byte JSON.

Why nginx and not a Python server: every peer shares the machine's two cores with the upstream
and wrk, so the upstream should cost as little CPU per request as possible and the same for
every peer. nginx's `return 200` from memory is the cheapest and most neutral answer there is,
so differences between peers are the proxies' own.
"""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.nginx import start_nginx
from benchmarks.processes import Server, free_port

# A product-like answer, as the catalog routes return; compact JSON of about 500 bytes.
BODY = json.dumps({
    "id": 17, "sku": "SKU-000017", "name": "Walnut Desk Lamp",
    "description": "A warm, dimmable desk lamp with a solid walnut base and a brushed brass arm; "
                   "fits small desks and bedside tables alike.",
    "price": 49.99, "currency": "EUR",
    "category": {"slug": "lighting", "name": "Lighting"},
    "tags": ["lamp", "walnut", "brass", "dimmable", "desk"],
    "stock": {"warehouse": "north", "available": 128, "reserved": 3},
    "dimensions_cm": {"width": 18.5, "depth": 18.5, "height": 42.0},
    "rating": {"average": 4.6, "count": 212},
    "updated_at": "2026-01-01T00:00:00Z",
}, separators=(",", ":"))
assert not set("'$\\") & set(BODY), "BODY goes inside a single-quoted nginx string"

# The upstream gets one worker: it is so cheap that one is plenty, and it leaves the second
# core to the proxy under test and to wrk.
UPSTREAM_WORKERS = 1


def start_upstream(workdir: Path) -> Server:
    """Start the upstream on a free loopback port; the caller waits for it and stops it."""
    return start_nginx("upstream", "upstream.conf", workdir / "upstream", free_port(),
                       workers=UPSTREAM_WORKERS, body=BODY)
