"""Syntax checks against the published JSON Schema (routing_rules/schema.json).

jsonschema does the checking; this module only turns its errors into `Problem`s with
`file:line`, the capability name, and a "did you mean" for misspelt keys.
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from proxy.rules.locate import field_of, rule_of
from proxy.rules.problems import Problem
from proxy.rules.source import RuleSource


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("routing_rules").joinpath("schema.json").read_text("utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    Draft202012Validator.check_schema(schema())
    return Draft202012Validator(schema())


NEVER_SHOWN = frozenset({"secret_env"})      # keys whose bad values are not echoed anywhere


def check_schema(src: RuleSource) -> list[Problem]:
    errors = sorted(_validator().iter_errors(src.data), key=lambda e: list(map(str, e.absolute_path)))
    # A value of the wrong type also fails its oneOf/anyOf: say it once, as a type error.
    wrong_type = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    problems: list[Problem] = []
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in wrong_type:
            continue
        problems.extend(_problems(src, error))
    return problems


def _problems(src: RuleSource, error: ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    rule = rule_of(src.data, path)
    where = field_of(path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        return [Problem(src.file, src.line(path + (key,)), rule,
                        f"{field_of(path + (key,))}: {_unknown_key(key, known)}")
                for key in error.instance if key not in known]
    if error.validator == "required":
        return [Problem(src.file, src.line(path), rule, f"{where}: {error.message}")]
    described = error.schema.get("description") if isinstance(error.schema, dict) else None
    if path and path[-1] in NEVER_SHOWN:    # a secret pasted where its variable's name belongs
        return [Problem(src.file, src.line(path), rule,
                        f"{where}: the value (not shown) is not valid: expected {described}; if "
                        "it is the secret itself, remove it from the file and its history")]
    if error.validator in ("anyOf", "oneOf") and described:
        message = f"{where}: {error.instance!r} is not valid: expected {described}"
    elif error.validator == "enum":
        message = f"{where}: {error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    elif error.validator == "type" and described and ("oneOf" in error.schema or "anyOf" in error.schema):
        message = f"{where}: {error.message}; expected {described}"
    elif error.validator == "pattern" and described:
        message = f"{where}: {error.instance!r} is not valid: expected {described}"
    else:
        message = f"{where}: {error.message}"
    return [Problem(src.file, src.line(path), rule, message)]


def _unknown_key(key: str, known: list[str]) -> str:
    if key in ("secret", "password", "token"):
        return (f"unknown key {key!r}: secrets never go in rule files; "
                "name an environment variable with secret_env")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"
