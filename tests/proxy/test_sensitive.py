"""proxy.sensitive: which names look secret and which numbers look like cards, the one rule
behind the access log, shadow samples, reports and stored routes."""
from __future__ import annotations

import pytest

from proxy.sensitive import looks_secret, luhn_valid, redact_cards, redact_query


@pytest.mark.parametrize("name", [
    "X-Auth-Token", "api_key", "X-Api-Key", "apikey", "newPassword", "new_password", "passwd",
    "client_secret", "cvc", "CVV2", "pan", "cardNumber", "card_holder", "JSESSIONID",
    "refreshtoken", "access_token", "Set-Cookie", "Proxy-Authorization", "X-Hub-Signature-256",
    "privateKey", "sig", "pin", "key", "code", "%74oken", "pass%77ord", "security_code",
    "securityCode", "cvn", "pw", "X-Pw", "passcode", "jwt", "bearer", "hmac"])
def test_names_that_look_secret(name):
    assert looks_secret(name)


@pytest.mark.parametrize("name", [
    "author", "postcode", "country_code", "monkey", "design", "company", "X-Request-Id", "limit",
    "q", "sort", "page", "uid", "keyword", "spin", "zip_code", "promo_code"])
def test_names_that_keep_their_values(name):
    assert not looks_secret(name)


def test_luhn():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


@pytest.mark.parametrize("text, masked", [
    ("4111 1111 1111 1111", "#"), ("4111-1111-1111-1111", "#"), ("4111.1111.1111.1111", "#"),
    ("4111+1111+1111+1111", "#"), ("4111%201111%201111%201111", "#"),
    ("4111 1111 1111 1111 12/25", "# 12/25"),         # an expiry after it
    ("4111111111111111 123", "# 123"),                 # a CVV after it
    ("cvv 123 4012888888881881", "cvv 123 #"),
    ("pay 5500-0000-0000-0004 and 4012888888881881", "pay # and #"),
    ("/api/products/x/4111-1111-1111-1111", "/api/products/x/#"),
    ("/api/products/%34111111111111111/x", "/api/products/#/x"),         # hidden by %-encoding
    ("pan=4111%2D1111%2D1111%2D1111", "pan=#"),
])
def test_card_like_numbers_are_masked_in_every_usual_spelling(text, masked):
    assert redact_cards(text, "#") == masked


@pytest.mark.parametrize("text", [
    "order 1234567890123",                              # not Luhn-valid
    "b60da011f942225c000000000000000b",                 # digits glued to letters: an id
    "2026-11-28 13:04:29.000000", "v1.2.3", "12345678901234567890123"])
def test_other_numbers_stay(text):
    assert redact_cards(text, "#") == text


def test_query_values_by_name_and_by_card_shape():
    assert redact_query("cc=4111111111111111&%74oken=t&api_key=k&q=shoes&page=2", "#") == \
        "cc=#&%74oken=#&api_key=#&q=shoes&page=2"
    assert redact_query("email=a@b.c&q=x", "#", frozenset({"email"})) == "email=#&q=x"
    assert redact_query("a=1;token=T1&security_code=987", "#") == "a=1&token=#&security_code=#"
