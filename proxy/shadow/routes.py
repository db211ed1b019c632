"""A bound on the routes one capability's shadow results are kept under.

Routes are templates (`/api/products/{id}`), but a prefix or regex matcher learns them from the
path (proxy.rules.paths.learned_route), and a client can send any path it likes: a stream of
made-up paths must not grow the store, the report or the noise sampler without end. Each
capability keeps its first `MAX_ROUTES` routes (those already in the store count, so a restart
does not start afresh); any further route is kept as `OTHER_ROUTES`.
"""
from __future__ import annotations

from typing import Iterable

from proxy.sensitive import redact_cards

MAX_ROUTES = 200
OTHER_ROUTES = "…other routes"


class RouteBudget:
    """Not thread-safe: the store calls it under its lock."""

    def __init__(self, limit: int = MAX_ROUTES) -> None:
        self.limit = limit
        self._known: dict[str, dict[str, str]] = {}     # capability -> route -> kept as

    def seed(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Routes already kept (capability, route), e.g. read back from the store."""
        for capability, route in pairs:
            known = self._known.setdefault(capability, {})
            if route != OTHER_ROUTES and len(known) < self.limit:
                known[route] = route

    def fold(self, capability: str, route: str) -> str:
        """The route as kept: itself while the capability has room, else `OTHER_ROUTES`.
        A card-like number in a route is masked (an id segment the matcher did not learn)."""
        known = self._known.setdefault(capability, {})
        kept = known.get(route)
        if kept is not None:
            return kept
        if route == OTHER_ROUTES or len(known) >= self.limit:
            return OTHER_ROUTES
        kept = known[route] = redact_cards(route, "{card}")
        return kept
