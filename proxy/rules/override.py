"""The tester override: pin a read to legacy or service, only with the configured secret.

The secret lives in an environment variable named by the rules, read once at load; it is
compared in constant time. The header pair is stripped from every forwarded request whether or
not it was honoured (see CompiledTable.strip_headers).
"""
from __future__ import annotations

import hmac
from typing import Mapping

from proxy.decision import LEGACY, SERVICE


class OverrideSpec:
    """Tester override: `<header>: legacy|service` honoured only with `<secret_header>: secret`."""
    __slots__ = ("header", "secret_header", "secret_env", "_secret")

    def __init__(self, header: str, secret_header: str, secret_env: str, secret: str | None) -> None:
        self.header = header.lower()
        self.secret_header = secret_header.lower()
        self.secret_env = secret_env
        self._secret = secret.encode() if secret else None

    @property
    def enabled(self) -> bool:
        return self._secret is not None

    def side(self, headers: Mapping[str, str]) -> str | None:
        want = headers.get(self.header)
        if want is None or self._secret is None:
            return None
        want = want.strip().lower()
        if want not in (LEGACY, SERVICE):
            return None
        given = headers.get(self.secret_header, "").encode()
        return want if hmac.compare_digest(given, self._secret) else None
