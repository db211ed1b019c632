import gzip
import json

from proxy.shadow.compare import Answer, FieldDiff, diff_answers, diff_json
from proxy.shadow_settings import CompareSettings

JSON = (("Content-Type", "application/json"),)
S = CompareSettings()


def answer(doc, status=200, headers=JSON):
    return Answer(status, headers, json.dumps(doc).encode())


def kinds(diffs):
    return {(d.path, d.kind) for d in diffs}


def test_identical_answers_have_no_diffs():
    doc = {"id": 1, "items": [{"p": 1.5}], "n": None}
    assert diff_answers(answer(doc), answer(doc), S) == []


def test_status_and_header_differences():
    diffs = diff_answers(answer({}, 200), answer({}, 404, (("content-type", "text/plain"),)), S)
    assert ("status", "status") in kinds(diffs)
    assert ("header:content-type", "header") in kinds(diffs)


def test_header_value_normalised():
    left = answer({}, headers=(("Content-Type", "application/json; charset=utf-8"),))
    right = answer({}, headers=(("content-type", "application/json;charset=UTF-8"),))
    assert diff_answers(left, right, S) == []


def test_json_kinds_and_field_keys():
    left = {"price": 49.99, "name": "Lamp", "gone": 1, "items": [{"p": 1}, {"p": 2}], "t": "1"}
    right = {"price": 50.0, "name": "Lamp", "new": 2, "items": [{"p": 1}, {"p": 3}, {"p": 4}],
             "t": 1}
    diffs = diff_json(left, right, S)
    assert kinds(diffs) == {("$.price", "value"), ("$.gone", "missing"), ("$.new", "extra"),
                            ("$.items", "length"), ("$.items[*].p", "value"), ("$.t", "type")}
    assert FieldDiff("$.price", "value", 49.99, 50.0) in diffs


def test_numeric_tolerance_and_int_float_equivalence():
    assert diff_json({"a": 1}, {"a": 1.0}, S) == []
    tolerant = CompareSettings(numeric_tolerance=0.01)
    assert diff_json({"a": 49.99}, {"a": 50.0}, tolerant) == []
    assert diff_json({"a": 49.99}, {"a": 50.01}, tolerant) != []
    assert kinds(diff_json({"a": True}, {"a": 1}, S)) == {("$.a", "type")}


def test_ignore_rules_by_path():
    settings = CompareSettings(ignore=("$.generated_at", "$..updated_at", "$.items[*].x"))
    left = {"generated_at": "a", "updated_at": 1, "c": {"updated_at": 1},
            "items": [{"x": 1, "y": 1}]}
    right = {"generated_at": "b", "c": {"updated_at": 2}, "items": [{"x": 2, "y": 2}]}
    assert kinds(diff_json(left, right, settings)) == {("$.items[*].y", "value")}


def test_unordered_arrays_compare_as_multisets():
    settings = CompareSettings(unordered_arrays=("$.tags",))
    assert diff_json({"tags": ["a", "b", "b"]}, {"tags": ["b", "a", "b"]}, settings) == []
    diffs = diff_json({"tags": ["a", "b"]}, {"tags": ["a", "c"]}, settings)
    assert diffs == [FieldDiff("$.tags[*]", "value", ["b"], ["c"])]
    assert diff_json({"tags": ["a", "b"]}, {"tags": ["b", "a"]}, S) != []


def test_gzip_bodies_are_compared_decoded():
    doc = {"a": 1}
    left = Answer(200, JSON + (("Content-Encoding", "gzip"),),
                  gzip.compress(json.dumps(doc).encode()))
    assert diff_answers(left, answer(doc), S) == []


def test_html_whitespace_and_patterns_normalised():
    html = (("content-type", "text/html; charset=utf-8"),)
    settings = CompareSettings(text_patterns=(r"csrf=\w+",))
    left = Answer(200, html, b"<html>\n  <body>  <p>Hello   world</p> csrf=abc </body></html>")
    right = Answer(200, html, b"<html><body><p>Hello world</p> csrf=xyz</body>\n</html>")
    assert diff_answers(left, right, settings) == []
    other = Answer(200, html, b"<html><body><p>Hello there</p></body></html>")
    diffs = diff_answers(left, other, settings)
    assert diffs == [FieldDiff("html:html>body>p", "value", "Hello world", "Hello there")]


def test_html_compared_element_by_element():
    html = (("content-type", "text/html"),)
    page = ("<html><body><h1>{h1}</h1><ul>{items}</ul><a href='{href}'>next</a><br>"
            "<footer><p>generated at {at}</p></footer></body></html>")
    left = Answer(200, html, page.format(h1="Lamp", items="<li>a</li><li>b</li>",
                                         href="/p/2", at="10:00").encode())
    right = Answer(200, html, page.format(h1="Lamps", items="<li>a</li>", href="/p/3",
                                          at="10:01").encode())
    assert [(d.path, d.kind, d.left, d.right) for d in diff_answers(left, right, S)] == [
        ("html:html>body>a@href", "value", "/p/2", "/p/3"),
        ("html:html>body>footer>p", "value", "generated at 10:00", "generated at 10:01"),
        ("html:html>body>h1", "value", "Lamp", "Lamps"),
        ("html:html>body>ul>li", "length", 2, 1),
    ]


def test_plain_text_is_one_body_field_with_the_difference_in_view():
    text = (("content-type", "text/plain"),)
    diffs = diff_answers(Answer(200, text, b"alpha beta gamma"),
                         Answer(200, text, b"alpha beta delta"), S)
    assert [(d.path, d.kind) for d in diffs] == [("body", "value")]
    assert "gamma" in diffs[0].left and "delta" in diffs[0].right


def test_json_declared_but_not_json_falls_back_to_text():
    left = Answer(200, JSON, b"oops")
    right = Answer(200, JSON, b"oops")
    assert diff_answers(left, right, S) == []


def test_null_missing_and_nested_type_changes_are_told_apart():
    left = {"a": None, "b": 1, "items": [{"tags": ["x"]}, {"tags": []}]}
    right = {"b": None, "items": [{"tags": "x"}, {"tags": [], "new": True}], "a2": 0}
    assert kinds(diff_json(left, right, S)) == {
        ("$.a", "missing"), ("$.b", "type"), ("$.items[*].tags", "type"),
        ("$.items[*].new", "extra"), ("$.a2", "extra")}


def test_empty_bodies_and_top_level_arrays():
    assert diff_answers(Answer(204, JSON, b""), Answer(204, JSON, b""), S) == []
    assert kinds(diff_answers(answer([1, 2]), answer([1, 2, 3]), S)) == {("$", "length")}
