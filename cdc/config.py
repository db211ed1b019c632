"""One YAML file per capability: where both stores are, the transport, apply settings, the mapping.

`${VAR:-default}` anywhere in a value is taken from the environment (URLs and secrets stay out of
the file). Each direction gets its own names, derived here once so every command agrees:
topics `<prefix>.<schema>.<table>`, slot/publication `strangler_<capability>_<direction>`,
consumer group/offset owner `<capability>_<direction>`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc.mapping import DIRECTIONS, TO_LEGACY, TO_SERVICE, Mapping, _Where, parse_mapping
from strangler.errors import OperatorError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
RULES_DIR = Path(__file__).resolve().parent.parent / "routing_rules" / "cdc"


@dataclass(frozen=True)
class Side:
    url: str
    topic_prefix: str
    schema: str


@dataclass(frozen=True)
class Transport:
    kind: str                   # kafka | embedded
    bootstrap: str
    partitions: int
    path: str


@dataclass(frozen=True)
class Route:
    """Everything one direction needs: source, target, names."""
    capability: str
    direction: str
    source: Side
    target: Side
    source_tables: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.capability}_{self.direction}"

    @property
    def slot(self) -> str:
        return f"strangler_{self.name}"

    def topic(self, table: str) -> str:
        from cdc.envelope import topic_name
        return topic_name(self.source.topic_prefix, self.source.schema, table)

    @property
    def topics(self) -> list[str]:
        return [self.topic(t) for t in self.source_tables]


@dataclass(frozen=True)
class CdcConfig:
    path: str
    capability: str
    legacy: Side
    service: Side
    writes: str
    transport: Transport
    batch_size: int
    mapping: Mapping
    apply_members: int = 1          # consumer-group members applying each direction (Kafka only)

    def route(self, direction: str) -> Route:
        forward = direction == TO_SERVICE
        return Route(self.capability, direction, self.legacy if forward else self.service,
                     self.service if forward else self.legacy,
                     tuple(self.mapping.source_tables(direction)))

    @property
    def write_direction(self) -> str:
        """Changes flow away from whoever owns writes."""
        return TO_SERVICE if self.writes == "legacy" else TO_LEGACY

    def directions(self, choice: str | None) -> list[str]:
        if choice in (None, "auto"):
            return [self.write_direction]
        if choice == "both":
            return list(DIRECTIONS)
        return [choice]


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return _ENV.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)
    return value


def _rules_path(config: Path, raw: str) -> Path:
    """`rules:` as written in the file is relative to the file; a path an environment variable
    gives (`${STRANGLER_RULES}`, as operators set it for every command) to the current
    directory, like every other path on a command line."""
    whole = _ENV.fullmatch(str(raw))
    if whole and os.environ.get(whole.group(1)):
        return Path(os.environ[whole.group(1)])
    return config.parent / str(_expand(raw))


def config_path(capability: str, path: str | None = None) -> Path:
    return Path(path) if path else RULES_DIR / f"{capability}.yaml"


def rules_owner(rules: Path, capability: str) -> str:
    """Who owns the capability's writes, as the routing rules the proxy serves say."""
    from proxy.rules import load_table
    from proxy.rules.problems import RulesError
    try:
        table = load_table(rules)
    except RulesError as exc:
        raise OperatorError(f"{rules}: the routing rules named by `rules:` do not load ({exc}); "
                            "fix them (strangler rules validate) or the path") from None
    for cap in table.capabilities:
        if cap.name == capability:
            return cap.writes
    raise OperatorError(f"{rules}: no capability {capability!r} in the routing rules; add it or point "
                        "`rules:` at the rules that route it")


def load_config(capability: str, path: str | None = None, writes: str | None = None) -> CdcConfig:
    """The capability's CDC config. `writes`: the write owner as the caller's own routing rules
    say (operate's gates, the proxy's automatic rollback), instead of the rules `rules:` names."""
    p = config_path(capability, path)
    if not p.is_file():
        raise OperatorError(f"{p}: no CDC config for capability {capability!r}; "
                            f"create it (see routing_rules/cdc/catalog.yaml) or pass --config")
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError
    try:
        doc = YAML(typ="rt").load(p.read_text())
    except YAMLError as exc:
        raise OperatorError(f"{p}: not valid YAML: {exc}; fix the syntax") from None
    where = _Where(str(p))
    if not isinstance(doc, dict):
        raise OperatorError(f"{p}:1: the file must be a mapping")
    mapping = parse_mapping(doc, str(p))

    def side(name: str) -> Side:
        node = doc.get(name)
        if not isinstance(node, dict) or "url" not in node:
            raise where.fail(doc, name if name in doc else None, name, "needs url and topic_prefix")
        url = _expand(node["url"])
        if not url:
            raise where.fail(node, "url", f"{name}.url", "is empty; set it or its environment variable")
        default_schema = "main" if url.startswith("sqlite") else "public"   # as each capture names it
        return Side(url=url, topic_prefix=str(_expand(node.get("topic_prefix", name))),
                    schema=str(_expand(node.get("schema", default_schema))))

    if doc.get("rules") is not None and "writes" in doc:
        raise where.fail(doc, "writes", "writes", "the routing rules named by `rules:` own the write "
                         "owner; remove writes: from this file (`strangler writes` edits the rules)")
    if writes is None and doc.get("rules") is not None:
        writes = rules_owner(_rules_path(p, doc["rules"]), str(doc.get("capability", capability)))
    elif writes is None:
        writes = doc.get("writes", "legacy")
    if writes not in ("legacy", "service"):
        raise where.fail(doc, "writes", "writes", f"{writes!r}: use legacy or service")
    tnode = doc.get("transport") or {}
    kind = _expand(tnode.get("kind", "embedded"))
    if kind not in ("kafka", "embedded"):
        raise where.fail(tnode, "kind", "transport.kind", f"{kind!r}: use kafka or embedded")
    try:
        partitions = int(_expand(tnode.get("partitions", 3)))
        batch_size = int(_expand((doc.get("apply") or {}).get("batch_size", 2000)))
        members = int(_expand((doc.get("apply") or {}).get("members", 1)))
    except ValueError as exc:
        raise OperatorError(f"{p}: transport.partitions / apply.batch_size / apply.members: {exc}") from None
    if members < 1 or (members > 1 and kind != "kafka"):
        raise where.fail(doc.get("apply"), "members", "apply.members",
                         f"{members}: use 1, or more only with transport kind kafka (the embedded log "
                         "has a single reader)")
    transport = Transport(kind=kind, bootstrap=str(_expand(tnode.get("bootstrap", "127.0.0.1:19092"))),
                          partitions=partitions, path=str(_expand(tnode.get("path", "var/cdc-log.db"))))
    return CdcConfig(path=str(p), capability=str(doc.get("capability", capability)),
                     legacy=side("legacy"), service=side("service"), writes=writes,
                     transport=transport, batch_size=batch_size, mapping=mapping,
                     apply_members=members)
