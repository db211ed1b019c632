"""Stage semantics, table-driven: who answers, who shadows, who falls back, who owns writes."""
from __future__ import annotations

import json

import pytest

from proxy.decision import LEGACY, SERVICE
from proxy.rules import load_table
from proxy.shadow_settings import ShadowSettings

RULES = """\
version: 1
backends:
  legacy: {{url: http://127.0.0.1:9001, dry_run: {legacy_dry}}}
  svc: {{url: http://127.0.0.1:9002, dry_run: {svc_dry}}}
default: legacy
capabilities:
  - name: catalog
    match: [{{path_prefix: /api/products}}]
    legacy: legacy
    service: svc
    stage: {stage}
    writes: {writes}
    rollout: {{percent: {percent}, sticky: [header:X-User-Id]}}
    shadow: {{percent: {shadow}, unsafe: {unsafe}, compare: {{ignore: [$.generated_at]}}}}
"""
WRITES = {"legacy": "legacy", "shadow": "legacy", "canary": "legacy", "cutover": "service",
          "retired": "service"}


def table_for(rules_file, stage: str, *, percent: float = 0, shadow: float = 0,
              unsafe: bool = False, writes: str | None = None, dry: bool = True):
    text = RULES.format(stage=stage, writes=writes or WRITES[stage], percent=percent,
                        shadow=shadow, unsafe=str(unsafe).lower(), legacy_dry=str(dry).lower(),
                        svc_dry=str(dry).lower())
    return load_table(rules_file(text), rng=lambda: 0, environ={})


# stage, percent, shadow%, GET -> (side, reason, fallback?, shadow target side or None)
READS = [
    ("legacy", 0, 0, (LEGACY, "stage", None, None)),
    ("legacy", 0, 100, (LEGACY, "stage", None, None)),          # shadow ignored in legacy
    ("shadow", 0, 100, (LEGACY, "stage", None, SERVICE)),
    ("shadow", 0, 0, (LEGACY, "stage", None, None)),
    ("canary", 100, 0, (SERVICE, "rollout", "legacy", None)),
    ("canary", 100, 100, (SERVICE, "rollout", "legacy", LEGACY)),  # reverse shadow
    ("canary", 0, 100, (LEGACY, "rollout", None, SERVICE)),
    ("cutover", 0, 0, (SERVICE, "stage", "legacy", None)),
    ("cutover", 0, 100, (SERVICE, "stage", "legacy", LEGACY)),     # reverse shadow
    ("retired", 0, 0, (SERVICE, "stage", None, None)),
    ("retired", 0, 100, (SERVICE, "stage", None, None)),          # no fallback, no shadow
]


@pytest.mark.parametrize("stage, percent, shadow, expected", READS)
def test_reads_by_stage(rules_file, stage, percent, shadow, expected) -> None:
    table = table_for(rules_file, stage, percent=percent, shadow=shadow)
    for method in ("GET", "HEAD", "OPTIONS"):
        d = table.decide(method, "/api/products/3", "", {"x-user-id": "u1"})
        got = (d.side, d.reason, d.fallback.name if d.fallback else None,
               d.shadow.target_side if d.shadow else None)
        assert got == expected
        assert d.backend.name == ("svc" if d.side == SERVICE else "legacy")
        if d.shadow is not None:
            assert d.shadow.dry_run is False
            assert d.shadow.target.name == ("svc" if d.shadow.target_side == SERVICE else "legacy")
            assert isinstance(d.shadow.compare, ShadowSettings)
            assert d.shadow.compare.compare.ignore == ("$.generated_at",)


@pytest.mark.parametrize("stage, writes", [
    ("legacy", "legacy"), ("shadow", "legacy"), ("canary", "legacy"), ("canary", "service"),
    ("cutover", "service"), ("retired", "service")])
def test_writes_go_to_the_write_owner_whatever_the_read_percentage(rules_file, stage, writes) -> None:
    for percent in (0, 50, 100):
        table = table_for(rules_file, stage, percent=percent, writes=writes)
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            for user in ("a", "b", "c", "d"):
                d = table.decide(method, "/api/products/3", "", {"x-user-id": user})
                assert (d.side, d.reason, d.fallback) == (writes, "write-owner", None)


@pytest.mark.parametrize("stage, unsafe, dry, expected", [
    ("shadow", False, True, (None, "unsafe-method")),
    ("shadow", True, False, (None, "unsafe-method")),
    ("shadow", True, True, (SERVICE, None)),
    ("cutover", True, True, (LEGACY, None)),
    ("retired", True, True, (None, None)),
    ("legacy", True, True, (None, None)),
])
def test_unsafe_methods_are_shadowed_only_when_opted_in_and_dry_run(rules_file, stage, unsafe,
                                                                    dry, expected) -> None:
    table = table_for(rules_file, stage, shadow=100, unsafe=unsafe, dry=dry)
    d = table.decide("POST", "/api/products", "", {})
    assert (d.shadow.target_side if d.shadow else None, d.shadow_skipped) == expected
    if d.shadow is not None:
        assert d.shadow.dry_run is True and d.shadow.target.honours_dry_run


def test_shadow_percentage_picks_by_sticky_key(rules_file) -> None:
    table = table_for(rules_file, "shadow", shadow=30)
    picked = [table.decide("GET", "/api/products", "", {"x-user-id": f"u{i}"}).shadow is not None
              for i in range(2000)]
    assert 500 < sum(picked) < 700  # ~30 % of 2000 stable hashes
    again = [table.decide("GET", "/api/products", "", {"x-user-id": f"u{i}"}).shadow is not None
             for i in range(2000)]
    assert picked == again


def test_compiled_capability_exposes_status(rules_file) -> None:
    text = RULES.format(stage="canary", writes="legacy", percent=5, shadow=10, unsafe="false",
                        legacy_dry="false", svc_dry="true").replace(
        "sticky: [header:X-User-Id]}", "sticky: [header:X-User-Id], steps: [1, 5, 25, 50, 100]}")
    text += ("    gates: {max_error_rate_delta: 0.5%, max_p99_ratio: 1.5, min_shadow_match: 99.5%,"
             " max_cdc_lag: 5s, min_requests: 200}\n")
    table = load_table(rules_file(text), environ={})
    cap = table.capability("catalog")
    assert (cap.stage, cap.writes, cap.percent, cap.next_step, cap.shadow_percent) == (
        "canary", LEGACY, 5.0, 25.0, 10.0)
    assert cap.gates.max_error_rate_delta == 0.5 and cap.gates.min_shadow_match == 99.5
    assert cap.gates.max_cdc_lag_s == 5.0 and cap.gates.min_requests == 200
    status = json.loads(json.dumps(table.status()))  # what /admin/status serves
    assert status["capabilities"][0]["steps"] == [1, 5, 25, 50, 100]
    assert status["capabilities"][0]["service"] == "svc"
    assert status["capabilities"][0]["sticky"] == ["header:X-User-Id"]
    assert table.backends["svc"].honours_dry_run and not table.backends["legacy"].honours_dry_run
