"""Where a benchmark run's figures are kept: one timestamped JSON file per run under results/."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def write_result(kind: str, payload: dict) -> Path:
    """Write `payload` to results/<kind>-<UTC time>.json (whole or not at all) and return it."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{kind}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)
    return path
