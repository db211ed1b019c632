"""A stored sample: one request, both answers and their diffs, redacted, with copy-as-curl
lines that reproduce it against either side (writes always as dry runs)."""
from __future__ import annotations

import json
import shlex

from proxy.decision import SAFE_METHODS, Backend
from proxy.exchange import Exchange
from proxy.shadow.compare import FieldDiff, decoded_body
from proxy.shadow.redact import redact_body, redact_field, redact_headers, redact_target
from proxy.shadow.replay import DRY_RUN_HEADER, NOT_REPLAYED, Replayed
from proxy.shadow_settings import ShadowSettings

SAMPLE_BODY_CHARS = 16 * 1024


def build_sample(ex: Exchange, settings: ShadowSettings, legacy: Replayed, service: Replayed,
                 diffs: list[FieldDiff], legacy_backend: Backend,
                 service_backend: Backend) -> str:
    """One request, both answers and the diffs, redacted, as JSON text for the store."""
    sensitive = frozenset(f.lower() for f in settings.sensitive_fields)
    req_headers = redact_headers(ex.request_headers, sensitive)
    req_body = redact_body(ex.request_body, sensitive, SAMPLE_BODY_CHARS)
    target = redact_target(ex.target, sensitive)
    dry_run = ex.decision.shadow is not None and ex.decision.shadow.dry_run

    def side(r: Replayed) -> dict:
        try:
            body = decoded_body(r.answer)
        except Exception:
            body = r.answer.body
        return {"status": r.answer.status,
                "headers": redact_headers(r.answer.headers, sensitive),
                "body": redact_body(body, sensitive, SAMPLE_BODY_CHARS),
                "latency_ms": round(r.latency_s * 1000, 3)}

    def curl(backend: Backend) -> str:
        parts = ["curl", "-sS", "-i", "-X", ex.method]
        for key, value in req_headers:
            if key.lower() not in NOT_REPLAYED:
                parts += ["-H", f"{key}: {value}"]
        if dry_run or ex.method.upper() not in SAFE_METHODS:
            parts += ["-H", f"{DRY_RUN_HEADER}: 1"]
        if ex.request_body:
            parts += ["--data-binary", req_body]
        parts.append(backend.url.rstrip("/") + target)
        return " ".join(shlex.quote(p) for p in parts)

    return json.dumps({
        "at": ex.started_at, "method": ex.method, "target": target,
        "request_headers": req_headers, "request_body": req_body,
        "legacy": side(legacy), "service": side(service),
        "diffs": [{"path": d.path, "kind": d.kind,
                   "left": redact_field(d.path, d.left, sensitive),
                   "right": redact_field(d.path, d.right, sensitive)} for d in diffs],
        "curl": {"legacy": curl(legacy_backend), "service": curl(service_backend)},
    }, ensure_ascii=False, default=str)
