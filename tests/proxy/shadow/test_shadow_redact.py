import json

from proxy.shadow.redact import (REDACTED, redact_body, redact_field, redact_headers,
                                 redact_target, redact_text)

SENSITIVE = frozenset({"password", "card_number", "token"})


def test_card_like_numbers_in_text():
    text = "paid with 4111 1111 1111 1111 and 5500-0000-0000-0004, order 1234567890123"
    out = redact_text(text)
    assert "4111" not in out and "5500" not in out
    assert out.count(REDACTED) == 2
    assert "1234567890123" in out  # not Luhn-valid: an ordinary number stays


def test_digit_runs_inside_identifiers_are_not_cards():
    # The proxy's request ids are hex with long zero-padded counters: a Luhn-valid run of
    # digits glued to letters is part of an identifier, not a card number.
    request_id = "b60da011f942225c000000000000000b"
    assert redact_text(f"X-Request-Id: {request_id}") == f"X-Request-Id: {request_id}"
    assert redact_text("card=4111111111111111&x=1") == f"card={REDACTED}&x=1"


def test_sensitive_json_fields_anywhere():
    body = json.dumps({"user": {"Password": "hunter2", "name": "A"},
                       "cards": [{"card_number": "4111111111111111"}],
                       "note": "card 4012888888881881", "n": 4111111111111111}).encode()
    out = json.loads(redact_body(body, SENSITIVE, 10_000))
    assert out == {"user": {"Password": REDACTED, "name": "A"},
                   "cards": [{"card_number": REDACTED}],
                   "note": f"card {REDACTED}", "n": REDACTED}


def test_form_bodies_query_strings_and_broken_json():
    assert redact_text("a=1&password=hunter2&token=abc", SENSITIVE) == \
        f"a=1&password={REDACTED}&token={REDACTED}"
    assert "hunter2" not in redact_body(b'{"password": "hunter2", ', SENSITIVE, 1000)
    # names that look secret, not only the configured ones; cards spelt as forms send them
    form = "client_secret=S1&new_password=P1&passwd=P2&cvc=123&card=4111+1111+1111+1111&qty=2"
    assert redact_text(form, SENSITIVE) == (f"client_secret={REDACTED}&new_password={REDACTED}&"
                                            f"passwd={REDACTED}&cvc={REDACTED}&card={REDACTED}&qty=2")
    assert "JSONTOK" not in redact_body(b'{"access_token": "JSONTOK", "a": [', SENSITIVE, 1000)


def test_json_keys_that_look_secret_even_when_not_configured():
    body = json.dumps({"access_token": "T1", "api_key": "K1", "new_password": "P1",
                       "author": "Ann", "postcode": "N1 9GU"}).encode()
    assert json.loads(redact_body(body, SENSITIVE, 10_000)) == {
        "access_token": REDACTED, "api_key": REDACTED, "new_password": REDACTED,
        "author": "Ann", "postcode": "N1 9GU"}
    assert redact_field("$.user.access_token", "T1", SENSITIVE) == REDACTED
    assert redact_field("$.author", "Ann", SENSITIVE) == "Ann"


def test_credential_headers():
    headers = redact_headers([("Authorization", "Bearer x"), ("Cookie", "sid=1"),
                              ("Set-Cookie", "sid=2"), ("Accept", "*/*")], SENSITIVE)
    assert headers == [("Authorization", REDACTED), ("Cookie", REDACTED),
                       ("Set-Cookie", REDACTED), ("Accept", "*/*")]


def test_names_that_look_secret_are_redacted_like_the_access_log_does():
    headers = redact_headers([("X-Auth-Token", "t1"), ("X-Session-Id", "s1"),
                              ("X-Request-Id", "r1")], SENSITIVE)
    assert headers == [("X-Auth-Token", REDACTED), ("X-Session-Id", REDACTED),
                       ("X-Request-Id", "r1")]
    assert redact_target("/api/products?limit=5&api_key=k1&q=a&sig=s1", SENSITIVE) == \
        f"/api/products?limit=5&api_key={REDACTED}&q=a&sig={REDACTED}"
    assert redact_target("/api/products/1", SENSITIVE) == "/api/products/1"
    assert redact_target("/p/4111-1111-1111-1111?%74oken=t&pan=4111+1111+1111+1111", SENSITIVE) \
        == f"/p/{REDACTED}?%74oken={REDACTED}&pan={REDACTED}"
    assert redact_field("header:x-auth-token", "t1", SENSITIVE) == REDACTED


def test_diff_values_of_sensitive_fields():
    assert redact_field("$.user.password", "a", SENSITIVE) == REDACTED
    assert redact_field("$.items[*].token", "a", SENSITIVE) == REDACTED
    assert redact_field("$.price", 12.5, SENSITIVE) == 12.5
    assert redact_field("header:set-cookie", "sid=abc", SENSITIVE) == REDACTED
    assert redact_field("header:content-type", "text/html", SENSITIVE) == "text/html"


def test_long_bodies_are_cut():
    out = redact_body(b"x" * 100, SENSITIVE, 10)
    assert out.startswith("x" * 10) and "90 more chars" in out
