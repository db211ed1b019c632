"""Which header and query-parameter names look like they carry a secret: one rule for every
place the proxy writes requests down (the access log, shadow samples and reports)."""
from __future__ import annotations

import re

# api_key, X-Auth-Token, session_id, signature, password, card_number, cvv, otp code, ...
SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|auth|session|sig|card|cvv|code|cookie)")


def looks_secret(name: str) -> bool:
    return SECRET_NAME.search(name) is not None
