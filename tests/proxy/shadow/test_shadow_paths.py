import pytest

from proxy.shadow.paths import compile_path, field_key


def test_field_key_generalises_indices():
    assert field_key(("items", 3, "price")) == "$.items[*].price"
    assert field_key(()) == "$"
    assert field_key(("a b", "x")) == "$['a b'].x"


def test_field_key_generalises_id_like_object_keys():
    assert field_key(("stock", "17", "qty")) == "$.stock.*.qty"
    assert field_key(("by_id", "3f2b8c1e-8d9a-4c55-9a57-0c1d2e3f4a5b")) == "$.by_id.*"
    assert field_key(("v2", "sku17")) == "$.v2.sku17"


@pytest.mark.parametrize("pattern,location,expected", [
    ("$.a.b", ("a", "b"), True),
    ("$.a.b", ("a", "b", "c"), False),
    ("$..name", ("name",), True),
    ("$..name", ("category", "name"), True),
    ("$..name", ("items", 4, "category", "name"), True),
    ("$..name", ("items", 4, "names"), False),
    ("$.items[*].price", ("items", 0, "price"), True),
    ("$.items[*].price", ("items", "x", "price"), True),
    ("$.items[1].price", ("items", 0, "price"), False),
    ("$.items[1].price", ("items", 1, "price"), True),
    ("$['a b']", ("a b",), True),
    ("$.*", ("anything",), True),
    ("$..*", ("a", 1, "b"), True),
])
def test_pattern_matching(pattern, location, expected):
    assert compile_path(pattern).matches(location) is expected


@pytest.mark.parametrize("bad", ["a.b", "$.a[", "$..", "$.a..", "$ a"])
def test_malformed_patterns_say_so(bad):
    with pytest.raises(ValueError, match="path"):
        compile_path(bad)


def test_descent_then_wildcard():
    """As in JSONPath, `[*]` is every child, of an array or an object."""
    pattern = compile_path("$..[*].price")
    assert pattern.matches(("items", 0, "price"))
    assert pattern.matches(("a", "b", 3, "price"))
    assert pattern.matches(("a", "price"))
    assert not pattern.matches(("price",))
