"""The compiled rule table: frozen, built once per load, swapped whole by the engine.

`decide` normalises and splits the path, walks the index and reads a few headers (the cookie and
query only when a matcher or sticky source needs them); it never parses config and never does I/O.
"""
from __future__ import annotations

import ipaddress
from types import MappingProxyType
from typing import Any, Mapping

from proxy.decision import DEFAULT, Backend, Decision
from proxy.rules.bucketing import RequestKeys
from proxy.rules.capability import CapabilityRouter, CompiledCapability
from proxy.rules.index import PathIndex
from proxy.rules.matchers import PATH, TEMPLATE
from proxy.rules.override import OverrideSpec
from proxy.rules.paths import learned_route, normalise
from proxy.rules.problems import Problem

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class CompiledTable:
    """Implements proxy.decision.RuleTable. Frozen: attributes cannot change after build."""

    def __init__(self, *, version: str, files: tuple[str, ...], backends: dict[str, Backend],
                 default: Backend, capabilities: tuple[CompiledCapability, ...],
                 routers: dict[str, CapabilityRouter], index: PathIndex, override: OverrideSpec,
                 trusted_proxies: tuple[IpNetwork, ...], warnings: tuple[Problem, ...]) -> None:
        self.version = version
        self.files = files
        self.backends: Mapping[str, Backend] = MappingProxyType(dict(backends))
        self.default = default
        self.capabilities = capabilities
        self.override = override
        self.trusted_proxies = trusted_proxies
        self.warnings = warnings
        # Never forwarded: the override pair (honoured or not) and the dry-run header, which only
        # the proxy itself may set on shadow copies.
        self.strip_headers = frozenset({override.header, override.secret_header,
                                        "x-strangler-dry-run"})
        self._routers = routers
        self._index = index
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(f"CompiledTable is frozen; cannot set {name}")
        object.__setattr__(self, name, value)

    def capability(self, name: str) -> CompiledCapability | None:
        router = self._routers.get(name)
        return router.cap if router else None

    def decide(self, method: str, path: str, query: str, headers: Mapping[str, str]) -> Decision:
        keys = RequestKeys(headers, query)
        path = normalise(path)
        matcher = self._index.match(method, path, keys)
        if matcher is None:
            return Decision(None, learned_route(path), DEFAULT, self.default, None, "default")
        router = self._routers[matcher.capability]
        route = matcher.value if matcher.kind in (PATH, TEMPLATE) else router.route(path)
        return router.decide(method, route, keys, self.override.side(headers))

    def status(self) -> dict[str, Any]:
        """What /admin/status shows about the rules."""
        return {"version": self.version, "files": list(self.files), "default": self.default.name,
                "override_enabled": self.override.enabled,
                "capabilities": [c.as_dict() for c in self.capabilities],
                "backends": sorted(self.backends),
                "warnings": [p.as_dict() for p in self.warnings]}
