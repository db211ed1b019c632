"""Identical answers (the usual case once a service is right) are recognised from their bytes
without parsing; the same bytes under different encodings are still decoded and compared."""
from __future__ import annotations

import gzip
import json

from proxy.shadow.compare import Answer, diff_answers
from proxy.shadow_settings import CompareSettings

JSON = (("Content-Type", "application/json"),)


def test_the_same_bytes_the_same_way_encoded_do_not_differ():
    body = json.dumps({"id": 7, "tags": ["a", "b"], "price": 1.5}).encode()
    assert diff_answers(Answer(200, JSON, body), Answer(200, JSON, body), CompareSettings()) == []


def test_the_same_bytes_under_another_encoding_are_decoded_and_compared():
    doc = json.dumps({"id": 7}).encode()
    packed = gzip.compress(doc)
    plain = Answer(200, JSON, packed)   # undeclared: these bytes are the body as is
    gzipped = Answer(200, JSON + (("Content-Encoding", "gzip"),), packed)
    diffs = diff_answers(plain, gzipped, CompareSettings(headers=()))
    assert diffs, "gzip bytes taken as text must not equal the decoded document"
    same = Answer(200, JSON + (("Content-Encoding", "gzip"),), gzip.compress(doc, mtime=1))
    assert diff_answers(gzipped, same, CompareSettings(headers=())) == []
