"""The shipped demo rules load cleanly and route the catalog as documented."""
from __future__ import annotations

from pathlib import Path

from proxy.decision import DEFAULT, LEGACY, SERVICE
from proxy.rules import check_rules, load_table

DEMO = Path(__file__).resolve().parents[3] / "routing_rules" / "demo.yaml"


def test_demo_rules_have_no_errors_and_no_warnings_with_the_secret_set() -> None:
    report = check_rules(DEMO, environ={"STRANGLER_OVERRIDE_SECRET": "s3cret"})
    assert report.problems == ()
    assert report.table is not None
    assert len(report.table.version) == 12


def test_demo_shadows_catalog_reads_to_the_service_and_keeps_legacy_answering() -> None:
    table = load_table(DEMO, environ={})
    decision = table.decide("GET", "/api/products/17", "", {})
    assert (decision.capability, decision.route, decision.side) == ("catalog", "/api/products/{id}", LEGACY)
    assert decision.backend.port == 8001
    assert decision.shadow is not None and decision.shadow.target_side == SERVICE
    assert decision.shadow.target.port == 8002
    listing = table.decide("GET", "/api/categories", "", {})
    assert listing.capability == "catalog" and listing.shadow is not None
    # Category reads are one report route, not one per slug (slugs do not look like ids).
    assert table.decide("GET", "/api/categories/office", "", {}).route == "/api/categories/{slug}"


def test_demo_writes_stay_with_legacy_and_are_not_shadowed_by_default() -> None:
    table = load_table(DEMO, environ={})
    decision = table.decide("POST", "/api/products", "", {})
    assert (decision.side, decision.reason) == (LEGACY, "write-owner")
    assert decision.shadow is None and decision.shadow_skipped == "unsafe-method"


def test_demo_sends_everything_else_to_the_default_backend() -> None:
    table = load_table(DEMO, environ={})
    for path in ("/", "/api/carts/3", "/api/productsX"):
        decision = table.decide("GET", path, "", {})
        assert (decision.capability, decision.side, decision.reason) == (None, DEFAULT, "default")
        assert decision.backend.name == "legacy"
    assert table.decide("GET", "/api/carts/3", "", {}).route == "/api/carts/{id}"


def test_learned_routes_fold_ids_of_every_usual_shape_never_keeping_raw_values() -> None:
    table = load_table(DEMO, environ={})
    for segment in ("3", "0b6a5f8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "b60da011f942225c",
                    "4111-1111-1111-1111", "4111 1111 1111 1111", "order-2026-000123",
                    "secretTOKENabcdefXYZ123"):
        assert table.decide("GET", f"/api/carts/{segment}/items", "", {}).route == \
            "/api/carts/{id}/items", segment
    assert table.decide("GET", "/api/carts/v2/items", "", {}).route == "/api/carts/v2/items"


def test_writes_matched_by_a_prefix_report_under_the_capability_template() -> None:
    # demo.yaml's templates are GET/HEAD only; a DELETE falls to the prefix matcher, yet must
    # report as /api/categories/{slug}, not one route per category slug.
    table = load_table(DEMO, environ={})
    for method, path, route in [
            ("DELETE", "/api/categories/kids", "/api/categories/{slug}"),
            ("PATCH", "/api/products/7", "/api/products/{id}"),
            ("GET", "/api/categories/kids/", "/api/categories/{slug}"),    # prefix, not template
            ("POST", "/api/categories", "/api/categories"),                # no template fits
            ("DELETE", "/api/categories/kids/toys", "/api/categories/kids/toys"),
            ("GET", "/api/categories//", "/api/categories//")]:
        decision = table.decide(method, path, "", {})
        assert (decision.capability, decision.route) == ("catalog", route), (method, path)
    assert table.decide("DELETE", "/api/carts/3", "", {}).route == "/api/carts/{id}"
    assert table.decide("GET", "/api/carts/3", "", {}).route == "/api/carts/{id}"
