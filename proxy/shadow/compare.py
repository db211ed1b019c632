"""Compare two HTTP answers: pure functions, no I/O.

`diff_answers(left, right, settings)` returns a list of `FieldDiff`. By convention `left` is
always the legacy answer and `right` the service's (or legacy's second answer when measuring
noise), whichever side answered the client: so `missing` means "legacy has it, the service does
not" and `extra` the opposite, in forward and reverse shadowing alike.

Kinds: `status`, `header`, `type`, `missing`, `extra`, `value`, `length`.
JSON bodies are compared structurally, location by location; text and HTML after blanking the
configured patterns and collapsing whitespace, HTML then element by element (`html:<path>`
fields, so a noisy footer does not hide a changed heading); anything else byte for byte.
"""
from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from proxy.exchange import Headers
from proxy.shadow.html_nodes import html_nodes
from proxy.shadow.paths import Location, any_matches, compile_paths, field_key
from proxy.shadow_settings import CompareSettings

STATUS = "status"
BODY = "body"
_WS = re.compile(r"\s+")
_BETWEEN_TAGS = re.compile(r">\s+<")
_SNIPPET = 60


@dataclass(frozen=True, slots=True)
class Answer:
    """One side's answer as it came off the wire (body possibly content-encoded)."""
    status: int
    headers: Headers
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One difference. `path` is the field key results are counted under."""
    path: str
    kind: str
    left: Any
    right: Any


def diff_answers(left: Answer, right: Answer, settings: CompareSettings) -> list[FieldDiff]:
    diffs: list[FieldDiff] = []
    if left.status != right.status:
        diffs.append(FieldDiff(STATUS, STATUS, left.status, right.status))
    for name in settings.headers:
        lv, rv = _norm_header(left.header(name)), _norm_header(right.header(name))
        if lv != rv:
            diffs.append(FieldDiff(f"header:{name.lower()}", "header", lv, rv))
    diffs.extend(diff_bodies(left, right, settings))
    return diffs


def diff_bodies(left: Answer, right: Answer, settings: CompareSettings) -> list[FieldDiff]:
    if left.body == right.body and (left.header("content-encoding")
                                    == right.header("content-encoding")):
        return []   # the same bytes, encoded the same way: nothing to parse (the usual case)
    lbody, rbody = decoded_body(left), decoded_body(right)
    if _is_json(left) or _is_json(right):
        try:
            ldoc, rdoc = _load_json(lbody), _load_json(rbody)
        except ValueError:
            pass  # one side is not JSON after all: compare as text below
        else:
            return diff_json(ldoc, rdoc, settings)
    if _is_text(left) or _is_text(right):
        html = "html" in (left.header("content-type") or right.header("content-type") or "")
        lt = normalise_text(_decode(lbody, left), settings.text_patterns, html)
        rt = normalise_text(_decode(rbody, right), settings.text_patterns, html)
        if lt == rt:
            return []
        if html:
            return diff_html(lt, rt)
        return [FieldDiff(BODY, "value", *_snippets(lt, rt))]
    if lbody != rbody:
        return [FieldDiff(BODY, "value", f"{len(lbody)} bytes", f"{len(rbody)} bytes")]
    return []


def diff_json(left: Any, right: Any, settings: CompareSettings) -> list[FieldDiff]:
    """Structural diff of two parsed JSON documents, honouring ignore/tolerance/unordered rules."""
    ignore = compile_paths(settings.ignore)
    unordered = compile_paths(settings.unordered_arrays)
    out: list[FieldDiff] = []

    def walk(lv: Any, rv: Any, loc: Location) -> None:
        if ignore and any_matches(ignore, loc):
            return
        lt, rt = json_type(lv), json_type(rv)
        if lt != rt:
            out.append(FieldDiff(field_key(loc), "type", lv, rv))
        elif lt == "object":
            for key in lv:
                if key not in rv:
                    if not (ignore and any_matches(ignore, loc + (key,))):
                        out.append(FieldDiff(field_key(loc + (key,)), "missing", lv[key], None))
                else:
                    walk(lv[key], rv[key], loc + (key,))
            for key in rv:
                if key not in lv and not (ignore and any_matches(ignore, loc + (key,))):
                    out.append(FieldDiff(field_key(loc + (key,)), "extra", None, rv[key]))
        elif lt == "array":
            if unordered and any_matches(unordered, loc):
                _diff_multiset(lv, rv, loc, out)
                return
            if len(lv) != len(rv):
                out.append(FieldDiff(field_key(loc), "length", len(lv), len(rv)))
            for i, (le, re_) in enumerate(zip(lv, rv)):
                walk(le, re_, loc + (i,))
        elif lt == "number":
            if abs(lv - rv) > settings.numeric_tolerance:
                out.append(FieldDiff(field_key(loc), "value", lv, rv))
        elif lv != rv:
            out.append(FieldDiff(field_key(loc), "value", lv, rv))

    walk(left, right, ())
    return out


def diff_html(left: str, right: str) -> list[FieldDiff]:
    """Per element path (see proxy.shadow.html_nodes): `html:<path>` fields."""
    ln, rn = html_nodes(left), html_nodes(right)
    out = []
    for key in ln.keys() | rn.keys():
        field = f"html:{key}"
        lv, rv = ln.get(key), rn.get(key)
        if rv is None:
            out.append(FieldDiff(field, "missing", lv[0], None))
        elif lv is None:
            out.append(FieldDiff(field, "extra", None, rv[0]))
        elif lv != rv:
            if len(lv) != len(rv):
                out.append(FieldDiff(field, "length", len(lv), len(rv)))
            pair = next(((a, b) for a, b in zip(lv, rv) if a != b), None)
            if pair is not None:
                out.append(FieldDiff(field, "value", *pair))
    return sorted(out, key=lambda d: (d.path, d.kind))


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def normalise_text(text: str, patterns: tuple[str, ...], html: bool) -> str:
    for pattern in patterns:
        text = re.sub(pattern, "", text)
    if html:
        text = _BETWEEN_TAGS.sub("><", text)
    return _WS.sub(" ", text).strip()


def decoded_body(answer: Answer) -> bytes:
    """Undo gzip/deflate content-encoding (the proxy keeps bodies as the upstream sent them)."""
    encoding = (answer.header("content-encoding") or "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(answer.body)
    if encoding == "deflate":
        try:
            return zlib.decompress(answer.body)
        except zlib.error:  # raw deflate without the zlib wrapper, as some servers send
            return zlib.decompress(answer.body, -zlib.MAX_WBITS)
    return answer.body


def _diff_multiset(lv: list, rv: list, loc: Location, out: list[FieldDiff]) -> None:
    if len(lv) != len(rv):
        out.append(FieldDiff(field_key(loc), "length", len(lv), len(rv)))
    lc = Counter(_canonical(v) for v in lv)
    rc = Counter(_canonical(v) for v in rv)
    only_left, only_right = lc - rc, rc - lc
    if only_left or only_right:
        out.append(FieldDiff(field_key(loc + (0,)), "value",
                             [json.loads(k) for k in only_left.elements()],
                             [json.loads(k) for k in only_right.elements()]))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _norm_header(value: str | None) -> str | None:
    return None if value is None else _WS.sub("", value).lower()


def _is_json(answer: Answer) -> bool:
    return "json" in (answer.header("content-type") or "").lower()


def _is_text(answer: Answer) -> bool:
    ctype = (answer.header("content-type") or "").lower()
    return ctype.startswith("text/") or "xml" in ctype or "javascript" in ctype


def _load_json(body: bytes) -> Any:
    return json.loads(body.decode("utf-8")) if body else None


def _decode(body: bytes, answer: Answer) -> str:
    ctype = answer.header("content-type") or ""
    charset = "utf-8"
    if "charset=" in ctype:
        charset = ctype.split("charset=", 1)[1].split(";")[0].strip().strip('"') or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


def _snippets(left: str, right: str) -> tuple[str, str]:
    """The neighbourhood of the first difference, so a sample shows where texts part ways."""
    i = 0
    for i, (a, b) in enumerate(zip(left, right)):
        if a != b:
            break
    else:
        i = min(len(left), len(right))
    start = max(0, i - _SNIPPET)
    return left[start:i + _SNIPPET], right[start:i + _SNIPPET]
