"""The published schema is a valid JSON Schema and the README's examples are valid rules."""
from __future__ import annotations

import re
from pathlib import Path

from jsonschema import Draft202012Validator

from proxy.rules import check_rules
from proxy.rules.schema_check import schema

README = Path(__file__).resolve().parents[3] / "routing_rules" / "README.md"


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(schema())


def test_readme_examples_form_a_valid_rule_file(rules_file) -> None:
    backends, capabilities, override = re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S)
    text = ("version: 1\n" + backends + "  legacy: {url: http://127.0.0.1:8001}\n"
            + capabilities + "default: legacy\n" + override)
    report = check_rules(rules_file(text), environ={"STRANGLER_OVERRIDE_SECRET": "s"})
    assert report.errors == []
    # The example lists every matcher kind, so the template is (knowingly) redundant.
    assert [w.message.split(" (")[0] for w in report.warnings] == ["match[2]"]
    cap = report.table.capability("catalog")
    assert cap.shadow.compare.unordered_arrays == ("$.items",)
    assert report.table.backends["catalog"].breaker.failures == 5
