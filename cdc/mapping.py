"""The declarative table mapping between the legacy store and a service store, both directions.

One YAML file per capability (`routing_rules/cdc/<capability>.yaml`) lists, per table pair, the
key on each side and how each column travels: renamed, converted (invertible named conversions
such as NUMERIC price <-> integer cents), through a value map, or through a lookup in the target
database (legacy `category_id` -> service `category_slug`). A source table may feed several target
tables (split) and several source tables may feed one target table (merge: each mapping writes
only its own columns). Every mistake is reported at load time as `file:line: field: what`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from strangler.errors import OperatorError

TO_SERVICE = "to_service"     # legacy -> service
TO_LEGACY = "to_legacy"       # service -> legacy
DIRECTIONS = (TO_SERVICE, TO_LEGACY)
# Debezium's marker for an unchanged TOASTed value: never written over real data.
UNAVAILABLE = "__debezium_unavailable_value"


class MappingError(Exception):
    """A row this mapping cannot translate (a poison event, not an operator mistake)."""


class LookupMissing(MappingError):
    """A lookup found no row yet; retried later since the referenced row may still be on its way."""


# --- conversions: named, each with its inverse -------------------------------------------------

def _cents(value: Any) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise MappingError(f"{value!r} is not a decimal amount") from None
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise MappingError(f"{value!r} has more than two decimals")
    return int(cents)


def _from_cents(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MappingError(f"{value!r} is not an integer number of cents")
    return str((Decimal(int(value)) / 100).quantize(Decimal("0.01")))


def _to_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise MappingError(f"{value!r} is not an integer") from None


def _to_str(value: Any) -> str:
    return str(value)


def _to_bool(value: Any) -> bool:
    if value in (0, 1, True, False):
        return bool(value)
    raise MappingError(f"{value!r} is not a boolean")


def _bool_to_int(value: Any) -> int:
    return int(_to_bool(value))


# name -> (towards the service, towards legacy)
CONVERSIONS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    "decimal_to_cents": (_cents, _from_cents),
    "int_to_str": (_to_str, _to_int),
    "str_to_int": (_to_int, _to_str),
    "int_to_bool": (_to_bool, _bool_to_int),
}


@dataclass(frozen=True)
class Lookup:
    """Resolve a value through a table of the target database: `take` where `match` = value."""
    table: str
    match: str
    take: str


@dataclass(frozen=True)
class ColumnMap:
    legacy: str
    service: str
    conversion: str | None = None
    values: tuple[tuple[Any, Any], ...] = ()          # (legacy value, service value)
    lookups: tuple[tuple[str, Lookup], ...] = ()      # (direction, lookup)
    line: int = 0


@dataclass(frozen=True)
class RowFilter:
    """Keep only rows whose legacy-side column value is (or is not) in a set."""
    column: str
    values: frozenset
    keep: bool            # True: `in`, False: `not_in`

    def accepts(self, legacy_row: dict[str, Any]) -> bool:
        if self.column not in legacy_row:
            return True
        return (legacy_row[self.column] in self.values) == self.keep


@dataclass(frozen=True)
class TableMap:
    legacy: str
    service: str
    legacy_key: tuple[str, ...]
    service_key: tuple[str, ...]
    columns: tuple[ColumnMap, ...]
    filter: RowFilter | None = None
    on_delete: str = "delete"           # "delete" the target row, or "clear" this mapping's columns
    # (direction, table, column): rows of the target's TABLE whose COLUMN holds a deleted row's
    # key go first, as the owning app's own delete does (legacy drops a product's stock row).
    also_delete: tuple[tuple[str, str, str], ...] = ()
    line: int = 0

    def directed(self, direction: str) -> "DirectedMap":
        return DirectedMap(self, direction)


Resolver = Callable[[Lookup, Any], Any]


@dataclass
class DirectedMap:
    """One table mapping seen from one direction: source row in, target row out."""
    table: TableMap
    direction: str
    source_table: str = field(init=False)
    target_table: str = field(init=False)
    source_key: tuple[str, ...] = field(init=False)
    target_key: tuple[str, ...] = field(init=False)
    target_columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        t = self.table
        forward = self.direction == TO_SERVICE
        self.source_table, self.target_table = (t.legacy, t.service) if forward else (t.service, t.legacy)
        self.source_key, self.target_key = ((t.legacy_key, t.service_key) if forward
                                            else (t.service_key, t.legacy_key))
        self.target_columns = tuple(c.service if forward else c.legacy for c in t.columns)
        self._steps = [self._step(c) for c in t.columns]

    def _step(self, col: ColumnMap) -> tuple[str, str, Callable[[Any, Resolver], Any]]:
        forward = self.direction == TO_SERVICE
        src, dst = (col.legacy, col.service) if forward else (col.service, col.legacy)
        convert = None
        if col.conversion:
            convert = CONVERSIONS[col.conversion][0 if forward else 1]
        table = dict(col.values if forward else [(b, a) for a, b in col.values])
        lookup = dict(col.lookups).get(self.direction)

        def run(value: Any, resolve: Resolver) -> Any:
            if value is None:
                return None
            if table:
                if value not in table:
                    raise MappingError(f"column {src}: value {value!r} has no entry in the value map")
                value = table[value]
            if convert:
                value = convert(value)
            if lookup:
                value = resolve(lookup, value)
            return value
        return src, dst, run

    def source_key_in_target(self) -> dict[str, str]:
        """Source key column -> the target column holding it unchanged (what verify chunks by)."""
        forward = self.direction == TO_SERVICE
        return {(c.legacy if forward else c.service): (c.service if forward else c.legacy)
                for c in self.table.columns
                if (c.legacy if forward else c.service) in self.source_key
                and not (c.conversion or c.values or c.lookups)}

    def accepts(self, source_row: dict[str, Any], resolve: Resolver) -> bool:
        flt = self.table.filter
        if flt is None:
            return True
        if self.direction == TO_SERVICE:
            return flt.accepts(source_row)
        # The filter names legacy columns: judge the row as legacy would store it.
        return flt.accepts(self.map_row(source_row, resolve))

    def map_row(self, row: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
        """Translate the columns present in `row`; TOAST placeholders and absent columns are left out."""
        out: dict[str, Any] = {}
        for src, dst, run in self._steps:
            if src not in row or row[src] == UNAVAILABLE:
                continue
            try:
                out[dst] = run(row[src], resolve)
            except LookupMissing:
                raise
            except MappingError as exc:
                raise MappingError(f"{self.source_table}.{src} -> {self.target_table}.{dst}: {exc}") from None
        return out

    def map_key(self, row: dict[str, Any], resolve: Resolver) -> tuple | None:
        """Only the target key of a source row (deletes and filtered-out rows need no more)."""
        wanted = {src for src, dst, _ in self._steps if dst in self.target_key}
        return self.target_key_of(self.map_row({c: v for c, v in row.items() if c in wanted}, resolve))

    def target_key_of(self, mapped: dict[str, Any]) -> tuple | None:
        if all(k in mapped for k in self.target_key):
            return tuple(mapped[k] for k in self.target_key)
        return None


@dataclass(frozen=True)
class Mapping:
    path: str
    tables: tuple[TableMap, ...]

    def for_source(self, direction: str, table: str) -> list[DirectedMap]:
        """Every mapping fed by a source table, in file order (split tables give several)."""
        return [t.directed(direction) for t in self.tables
                if (t.legacy if direction == TO_SERVICE else t.service) == table]

    def target_order(self, direction: str) -> list[str]:
        """Target tables in file order: parents first, so upserts satisfy foreign keys."""
        seen: list[str] = []
        for t in self.tables:
            name = t.service if direction == TO_SERVICE else t.legacy
            if name not in seen:
                seen.append(name)
        return seen

    def source_tables(self, direction: str) -> list[str]:
        seen: list[str] = []
        for t in self.tables:
            name = t.legacy if direction == TO_SERVICE else t.service
            if name not in seen:
                seen.append(name)
        return seen


# --- loading and validation --------------------------------------------------------------------

class _Where:
    """Builds `file:line: field: message` errors from ruamel's line information."""

    def __init__(self, path: str) -> None:
        self.path = path

    def line(self, node: Any, key: Any = None) -> int:
        lc = getattr(node, "lc", None)
        if lc is None:
            return 0
        try:
            return (lc.key(key)[0] if key is not None else lc.line) + 1
        except (KeyError, IndexError, TypeError):
            return lc.line + 1

    def fail(self, node: Any, key: Any, fieldname: str, message: str) -> OperatorError:
        return OperatorError(f"{self.path}:{self.line(node, key)}: {fieldname}: {message}")


def load_mapping_text(text: str, path: str = "<mapping>") -> Mapping:
    try:
        doc = YAML(typ="rt").load(text)
    except YAMLError as exc:
        raise OperatorError(f"{path}: not valid YAML: {exc}; fix the syntax") from None
    return parse_mapping(doc, path)


def load_mapping(path: str | Path) -> Mapping:
    p = Path(path)
    if not p.is_file():
        raise OperatorError(f"{p}: mapping file not found; create it or pass the right path")
    return load_mapping_text(p.read_text(), str(p))


def parse_mapping(doc: Any, path: str) -> Mapping:
    where = _Where(path)
    if not isinstance(doc, dict) or "tables" not in doc:
        raise OperatorError(f"{path}:1: tables: missing; list the mapped tables under `tables:`")
    tables = doc["tables"]
    if not isinstance(tables, list) or not tables:
        raise where.fail(doc, "tables", "tables", "must be a non-empty list of table mappings")
    parsed = tuple(_parse_table(where, t, f"tables[{i}]") for i, t in enumerate(tables))
    return Mapping(path=path, tables=parsed)


_TABLE_FIELDS = {"legacy", "service", "key", "columns", "filter", "on_delete", "also_delete"}
_COLUMN_FIELDS = {"service", "convert", "values", "lookup"}


def _parse_table(where: _Where, node: Any, name: str) -> TableMap:
    if not isinstance(node, dict):
        raise where.fail(node, None, name, "must be a mapping with legacy, service, key, columns")
    for k in node:
        if k not in _TABLE_FIELDS:
            raise where.fail(node, k, f"{name}.{k}", f"unknown field; use {sorted(_TABLE_FIELDS)}")
    for k in ("legacy", "service", "key", "columns"):
        if k not in node:
            raise where.fail(node, None, f"{name}.{k}", "missing")
    legacy, service = node["legacy"], node["service"]
    for k, v in (("legacy", legacy), ("service", service)):
        if not isinstance(v, str) or not v.isidentifier():
            raise where.fail(node, k, f"{name}.{k}", f"{v!r} is not a table name")

    cols_node = node["columns"]
    if not isinstance(cols_node, dict) or not cols_node:
        raise where.fail(node, "columns", f"{name}.columns",
                         "must map each legacy column to a service column (or a spec)")
    columns = []
    for legacy_col, spec in cols_node.items():
        columns.append(_parse_column(where, cols_node, legacy_col, spec, f"{name}.columns.{legacy_col}"))
    service_names = [c.service for c in columns]
    dupes = {s for s in service_names if service_names.count(s) > 1}
    if dupes:
        raise where.fail(node, "columns", f"{name}.columns", f"service column(s) {sorted(dupes)} mapped twice")

    legacy_key, service_key = _parse_key(where, node, name, columns)
    flt = None
    if "filter" in node:
        flt = _parse_filter(where, node, name, {c.legacy for c in columns})
    on_delete = node.get("on_delete", "delete")
    if on_delete not in ("delete", "clear"):
        raise where.fail(node, "on_delete", f"{name}.on_delete", f"{on_delete!r}: use delete or clear")
    return TableMap(legacy=legacy, service=service, legacy_key=legacy_key, service_key=service_key,
                    columns=tuple(columns), filter=flt, on_delete=on_delete,
                    also_delete=_parse_also_delete(where, node, name, legacy_key, service_key),
                    line=where.line(node))


def _parse_also_delete(where: _Where, node: Any, name: str, legacy_key: tuple[str, ...],
                       service_key: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """`also_delete: {to_legacy: [inventory.product_id, ...]}`, in the order they go."""
    spec = node.get("also_delete")
    if spec is None:
        return ()
    field = f"{name}.also_delete"
    if not isinstance(spec, dict) or not set(spec) <= set(DIRECTIONS):
        raise where.fail(node, "also_delete", field, "map a direction (to_service, to_legacy) to a "
                         "list of TABLE.COLUMN")
    out = []
    for direction, targets in spec.items():
        key = service_key if direction == TO_SERVICE else legacy_key
        if len(key) != 1:
            raise where.fail(spec, direction, f"{field}.{direction}", "needs a one-column key")
        if not isinstance(targets, list) or not targets:
            raise where.fail(spec, direction, f"{field}.{direction}", "must list TABLE.COLUMN")
        for target in targets:
            table, _, column = str(target).partition(".")
            if not (table.isidentifier() and column.isidentifier()):
                raise where.fail(spec, direction, f"{field}.{direction}",
                                 f"{target!r} is not TABLE.COLUMN")
            out.append((direction, table, column))
    return tuple(out)


def _parse_key(where: _Where, node: Any, name: str, columns: list[ColumnMap]):
    key = node["key"]
    by_legacy = {c.legacy: c for c in columns}
    by_service = {c.service: c for c in columns}
    if isinstance(key, str):
        key = [key]
    if isinstance(key, list):
        legacy_key = tuple(key)
        missing = [k for k in legacy_key if k not in by_legacy]
        if missing:
            raise where.fail(node, "key", f"{name}.key", f"key column(s) {missing} are not in columns")
        service_key = tuple(by_legacy[k].service for k in legacy_key)
    elif isinstance(key, dict) and set(key) == {"legacy", "service"}:
        legacy_key = tuple([key["legacy"]] if isinstance(key["legacy"], str) else key["legacy"])
        service_key = tuple([key["service"]] if isinstance(key["service"], str) else key["service"])
        for side, cols, index in (("legacy", legacy_key, by_legacy), ("service", service_key, by_service)):
            missing = [k for k in cols if k not in index]
            if missing or not cols:
                raise where.fail(key, side, f"{name}.key.{side}",
                                 f"key column(s) {missing or '[]'} are not mapped in columns")
    else:
        raise where.fail(node, "key", f"{name}.key",
                         "use a column name, a list, or {legacy: [...], service: [...]}")
    return legacy_key, service_key


def _parse_column(where: _Where, parent: Any, legacy_col: Any, spec: Any, name: str) -> ColumnMap:
    line = where.line(parent, legacy_col)
    if not isinstance(legacy_col, str) or not legacy_col.isidentifier():
        raise where.fail(parent, legacy_col, name, f"{legacy_col!r} is not a column name")
    if isinstance(spec, str):
        spec = {"service": spec}
    if spec is None:
        spec = {"service": legacy_col}
    if not isinstance(spec, dict):
        raise where.fail(parent, legacy_col, name, "must be a service column name or a spec")
    for k in spec:
        if k not in _COLUMN_FIELDS:
            raise where.fail(spec, k, f"{name}.{k}", f"unknown field; use {sorted(_COLUMN_FIELDS)}")
    service = spec.get("service", legacy_col)
    if not isinstance(service, str) or not service.isidentifier():
        raise where.fail(spec, "service", f"{name}.service", f"{service!r} is not a column name")
    conversion = spec.get("convert")
    if conversion is not None and conversion not in CONVERSIONS:
        raise where.fail(spec, "convert", f"{name}.convert",
                         f"unknown conversion {conversion!r}; use one of {sorted(CONVERSIONS)}")
    values: tuple = ()
    if "values" in spec:
        vmap = spec["values"]
        if not isinstance(vmap, dict) or not vmap:
            raise where.fail(spec, "values", f"{name}.values", "must map legacy values to service values")
        if len(set(vmap.values())) != len(vmap):
            raise where.fail(spec, "values", f"{name}.values",
                             "two legacy values map to one service value; the reverse direction "
                             "needs a one-to-one map")
        values = tuple((k, v) for k, v in vmap.items())
    lookups: tuple = ()
    if "lookup" in spec:
        lk = spec["lookup"]
        if not isinstance(lk, dict) or not set(lk) <= set(DIRECTIONS) or not lk:
            raise where.fail(spec, "lookup", f"{name}.lookup",
                             f"give {TO_SERVICE} and/or {TO_LEGACY}: {{table, match, take}}")
        found = []
        for direction, one in lk.items():
            if not isinstance(one, dict) or set(one) != {"table", "match", "take"}:
                raise where.fail(lk, direction, f"{name}.lookup.{direction}",
                                 "needs exactly table, match and take")
            found.append((direction, Lookup(str(one["table"]), str(one["match"]), str(one["take"]))))
        lookups = tuple(found)
    return ColumnMap(legacy=legacy_col, service=service, conversion=conversion, values=values,
                     lookups=lookups, line=line)


def _parse_filter(where: _Where, node: Any, name: str, legacy_cols: set[str]) -> RowFilter:
    flt = node["filter"]
    if not isinstance(flt, dict) or "column" not in flt or len(set(flt) & {"in", "not_in"}) != 1:
        raise where.fail(node, "filter", f"{name}.filter", "use {column: C, in: [...]} or {column: C, not_in: [...]}")
    if flt["column"] not in legacy_cols:
        raise where.fail(flt, "column", f"{name}.filter.column",
                         f"{flt['column']!r} is not a mapped legacy column")
    keep = "in" in flt
    vals = flt["in"] if keep else flt["not_in"]
    if not isinstance(vals, list):
        raise where.fail(flt, "in" if keep else "not_in", f"{name}.filter", "values must be a list")
    return RowFilter(column=flt["column"], values=frozenset(vals), keep=keep)
