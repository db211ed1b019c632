"""Tester override: honoured only with the configured secret; its headers never forwarded."""
from __future__ import annotations

import pytest

from proxy.decision import LEGACY, SERVICE
from proxy.rules import check_rules, load_table

RULES = """\
version: 1
backends:
  legacy: {url: http://127.0.0.1:9001}
  svc: {url: http://127.0.0.1:9002}
default: legacy
capabilities:
  - name: catalog
    match: [{path_prefix: /api/products}]
    legacy: legacy
    service: svc
    stage: canary
    writes: legacy
    rollout: {percent: 0, sticky: [header:X-User-Id]}
  - name: gone
    match: [{path_prefix: /api/old}]
    legacy: legacy
    service: svc
    stage: retired
override:
  header: X-Pin
  secret_header: X-Pin-Secret
  secret_env: TEST_PIN_SECRET
"""
ENV = {"TEST_PIN_SECRET": "correct horse"}


@pytest.fixture
def table(rules_file):
    return load_table(rules_file(RULES), environ=ENV)


def test_override_with_the_secret_pins_reads(table) -> None:
    d = table.decide("GET", "/api/products/1", "", {"x-pin": "service", "x-pin-secret": "correct horse"})
    assert (d.side, d.reason, d.backend.name, d.fallback) == (SERVICE, "override", "svc", None)
    d = table.decide("GET", "/api/products/1", "", {"x-pin": "Legacy", "x-pin-secret": "correct horse"})
    assert (d.side, d.reason) == (LEGACY, "override")


@pytest.mark.parametrize("headers", [
    {"x-pin": "service"},
    {"x-pin": "service", "x-pin-secret": "wrong"},
    {"x-pin": "service", "x-pin-secret": ""},
    {"x-pin": "elsewhere", "x-pin-secret": "correct horse"},
])
def test_override_without_the_right_secret_is_ignored(table, headers) -> None:
    d = table.decide("GET", "/api/products/1", "", headers)
    assert (d.side, d.reason) == (LEGACY, "rollout")


def test_override_headers_are_always_stripped(table) -> None:
    assert {"x-pin", "x-pin-secret"} <= table.strip_headers
    assert all(h == h.lower() for h in table.strip_headers)


def test_override_never_moves_writes_off_the_owner(table) -> None:
    d = table.decide("POST", "/api/products", "", {"x-pin": "service", "x-pin-secret": "correct horse"})
    assert (d.side, d.reason) == (LEGACY, "write-owner")


def test_retired_capability_has_no_legacy_route_to_pin(table) -> None:
    d = table.decide("GET", "/api/old/1", "", {"x-pin": "legacy", "x-pin-secret": "correct horse"})
    assert (d.side, d.reason) == (SERVICE, "stage")


def test_unset_secret_disables_override_with_a_warning(rules_file) -> None:
    report = check_rules(rules_file(RULES), environ={})
    assert report.table is not None and not report.table.override.enabled
    (warning,) = report.warnings
    assert warning.line == 19 and "TEST_PIN_SECRET is not set" in warning.message
    d = report.table.decide("GET", "/api/products/1", "", {"x-pin": "service", "x-pin-secret": ""})
    assert d.reason == "rollout"
    assert {"x-pin", "x-pin-secret"} <= report.table.strip_headers


def test_default_header_names_without_an_override_block(rules_file) -> None:
    text = RULES[: RULES.index("override:")]
    table = load_table(rules_file(text), environ={"STRANGLER_OVERRIDE_SECRET": "s"})
    assert {"x-strangler-route", "x-strangler-route-secret"} <= table.strip_headers
    d = table.decide("GET", "/api/products", "", {"x-strangler-route": "service",
                                                  "x-strangler-route-secret": "s"})
    assert d.reason == "override"
