"""The backtracking check judges what Python's `re` does: exponential regexes are found, and
the ones it lets through stay fast on the inputs that make the others explode."""
from __future__ import annotations

import re
import time

import pytest

from proxy.rules.regex_safety import explosive


@pytest.mark.parametrize("pattern", [
    "(a+)+b", "(a*)*", "(a|aa)+", r"(\w+\s?)*", "(a*b*)*c", "(a{2,5})+b", "^(a|a?)+$",
    "(.*a){3,}", "(x+x+)+y", "(?=(a+)+b)", "(?>(a|aa)+c)", "(?i)(a|A|aa)+b", "(ab|a|b)+c",
    r"(\d|\w\w)+x", "(a+?)+?b"])
def test_exponential_regexes_are_found(pattern: str) -> None:
    assert explosive(pattern)


@pytest.mark.parametrize("pattern, attack", [
    ("(?>a+)+b", "a" * 5000), ("a++b", "a" * 5000), ("(a+)++b", "a" * 5000),
    ("(/[a-z]+)*$", "/ab" * 3000 + "!"), ("(/[a-z]+/?)*$", "/a//" * 3000 + "!"),
    (r"(\d|\w)+x", "1" * 5000), ("(a?)*b", "a" * 5000), ("(?:/v1|/v2)*/x", "/v1" * 3000),
    ("a*a*b", "a" * 2000), ("[^/]+(/[^/]+)*/edit", "/".join("ab" * 3000) + "!")])
def test_what_passes_stays_fast_where_nested_repeats_explode(pattern: str, attack: str) -> None:
    assert not explosive(pattern)
    started = time.perf_counter()
    re.fullmatch(pattern, attack)
    assert time.perf_counter() - started < 1.0


def test_a_regex_that_does_not_compile_is_left_to_the_compile_check() -> None:
    assert not explosive("(a+")
