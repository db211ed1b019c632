"""What looks secret or card-like: one rule for every place the proxy writes requests down
(the access log, shadow samples and reports, stored route names).

A name looks secret when it contains a strong stem (`password`, `secret`, `token`, `session`,
`apikey`, `cookie`, `cvv`, `csrf`: `X-Auth-Token`, `refreshtoken`, `JSESSIONID`), when one of its
words is a weak one (`auth`, `pin`, `pw`, `card`, `pan`, `cvn`, `jwt`: `X-Auth-User`,
`card_holder`), when it pairs `key` or `code` with a qualifier (`api_key`, `X-Api-Key`,
`privateKey`, `security_code`), or when it is just `key` or `code` (`?key=`, OAuth's `?code=`).
Weak stems count as words only, so `author`, `postcode`, `country_code`, `design` and `monkey`
keep their values. Names are percent-decoded first (`%74oken`); `;` separates query parameters
as `&` does.
A card-like number is 13 to 19 digits passing the Luhn check, its groups separated by nothing,
spaces, dashes, dots, `+` or `%20`, and found even when more digits follow after a separator
(`4111 1111 1111 1111 12/25`, `4111111111111111 123`) or when percent-encoding hides it
(`%34111…`, `4111%2D1111…`). Any such number is masked, a Luhn-valid id or timestamp too (one in
ten of them): in what is written down, a hidden id costs less than a card in clear.
"""
from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote, unquote_plus

STRONG_STEMS = re.compile(r"(?i)passw|passphrase|passcode|secret|token|sessid|session|apikey|"
                          r"cookie|credential|signature|cvv|cvc|csrf|xsrf")
WEAK_WORDS = frozenset({"pass", "pwd", "pw", "auth", "authorization", "sid", "sig", "otp", "pin",
                        "card", "pan", "ssn", "iban", "cvn", "csc", "jwt", "bearer", "hmac"})
# `key` and `code` are secret after one of these words (api_key, security_code, securityCode)
QUALIFIED = {"key": frozenset({"api", "access", "private", "secret", "signing", "client",
                               "master", "encryption", "license"}),
             "code": frozenset({"security", "verification", "auth", "otp", "sms", "reset",
                                "access", "card"})}
WHOLE_NAMES = frozenset({"key", "code"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])\d(?:(?:[ .+-]|%20)?\d){12,}(?![0-9A-Za-z])")
_GROUP = re.compile(r"%20|[ .+-]|(\d+)")


@lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    if "%" in name or "+" in name:
        name = unquote_plus(name)
    if STRONG_STEMS.search(name):
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    if len(words) == 1 and words[0] in WHOLE_NAMES:
        return True
    return any(w in WEAK_WORDS or (w in QUALIFIED and i and words[i - 1] in QUALIFIED[w])
               for i, w in enumerate(words))


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def redact_cards(text: str, mark: str) -> str:
    """TEXT with each card-like number replaced by MARK; a number hidden by percent-encoding
    (`%34111…`, `4111%2D1111…`) is found in the decoded text, which is then what is kept."""
    if len(text) < 13:
        return text
    out = _DIGIT_RUN.sub(lambda m: _mask_run(m.group(0), mark), text)
    if "%" in out:
        decoded = unquote(out)
        masked = _DIGIT_RUN.sub(lambda m: _mask_run(m.group(0), mark), decoded)
        if masked != decoded:
            return masked
    return out


def _mask_run(run: str, mark: str) -> str:
    """Within a run of digit groups, mask the leftmost longest spans of whole groups that make a
    card number (a card followed by an expiry or CVV is one run, but not itself Luhn-valid)."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run) if m.group(1)]
    out, done, i = [], 0, 0
    while i < len(groups):
        for j in range(len(groups) - 1, i - 1, -1):
            digits = "".join(run[s:e] for s, e in groups[i:j + 1])
            if is_card_number(digits):
                out += [run[done:groups[i][0]], mark]
                done, i = groups[j][1], j + 1
                break
        else:
            i += 1
    return "".join(out) + run[done:] if out else run


def redact_query(query: str, mark: str, sensitive: frozenset[str] = frozenset()) -> str:
    """A query string with the values of parameters whose names look secret (or are configured
    SENSITIVE) replaced by MARK, and card-like numbers masked anywhere in it."""
    params = []
    for item in _PARAM_SEPARATOR.split(query):      # `;` separates parameters too (old CGI)
        name, eq, _ = item.partition("=")
        params.append(f"{name}={mark}" if eq and (looks_secret(name)
                                                  or unquote_plus(name).lower() in sensitive)
                      else item)
    return redact_cards("&".join(params), mark)


_PARAM_SEPARATOR = re.compile(r"[&;]")
