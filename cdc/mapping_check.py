"""The mapping against the real databases: every table, key and column it names on a side, and
every lookup resolved on that side, exists there. Checked before anything is captured, sent or
applied, so a typo is one file:line error instead of events dead-lettered (or topics created)
one by one."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from cdc.mapping import TO_LEGACY, TO_SERVICE, Lookup, Mapping
from strangler.errors import OperatorError

if TYPE_CHECKING:
    from cdc.config import CdcConfig

Columns = Callable[[str], "set[str] | None"]    # table -> its column names, None if absent
SIDES = ("legacy", "service")


def check_side(mapping: Mapping, side: str, columns: Columns) -> None:
    """SIDE ("legacy" or "service"): its tables, keys and columns, and the lookups of the
    direction that writes to it (they read that side's tables)."""
    path = mapping.path
    into = TO_SERVICE if side == "service" else TO_LEGACY
    for i, t in enumerate(mapping.tables):
        table = getattr(t, side)
        found = columns(table)
        if found is None:
            raise OperatorError(f"{path}:{t.line}: tables[{i}].{side}: table {table!r} does not "
                                f"exist in the {side} database; create it (migrations) or fix "
                                "the name")
        key = t.legacy_key if side == "legacy" else t.service_key
        for name in key:
            if name not in found:
                raise OperatorError(f"{path}:{t.line}: tables[{i}].key.{side}: column {name!r} "
                                    f"is not in table {table!r} ({', '.join(sorted(found))})")
        for direction, dependent, column in t.also_delete:
            if direction != into:
                continue
            there = columns(dependent)
            if there is None or column not in there:
                raise OperatorError(f"{path}:{t.line}: tables[{i}].also_delete.{direction}: "
                                    f"{dependent}.{column} is not in the {side} database")
        for col in t.columns:
            name = getattr(col, side)
            if name not in found:
                raise OperatorError(f"{path}:{col.line}: tables[{i}].columns.{col.legacy}: {side} "
                                    f"column {name!r} is not in table {table!r} "
                                    f"({', '.join(sorted(found))})")
            for direction, lookup in col.lookups:
                if direction == into:
                    _check_lookup(lookup, columns, f"{path}:{col.line}: tables[{i}].columns."
                                                   f"{col.legacy}", side)


def _check_lookup(lookup: Lookup, columns: Columns, where: str, side: str) -> None:
    there = columns(lookup.table)
    if there is None:
        what = f"table {lookup.table!r} does not exist"
    elif absent := [c for c in (lookup.match, lookup.take) if c not in there]:
        what = f"column {absent[0]!r} is not in table {lookup.table!r}"
    else:
        return
    raise OperatorError(f"{where}: lookup {lookup.table}.{lookup.match} -> {lookup.take}: {what} "
                        f"of the {side} database")

def check_stores(config: "CdcConfig") -> None:
    """Both databases of a CDC config against its mapping (what every `strangler cdc` command
    checks first)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import NoSuchTableError

    from strangler.db import make_engine
    for side in SIDES:
        store = getattr(config, side)
        engine = make_engine(store.url)
        try:
            inspector = inspect(engine)

            def columns(table: str) -> set[str] | None:
                try:
                    return {c["name"] for c in inspector.get_columns(table, schema=store.schema)}
                except NoSuchTableError:
                    return None
            check_side(config.mapping, side, columns)
        finally:
            engine.dispose()
