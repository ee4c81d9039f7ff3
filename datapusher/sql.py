"""Fixed-shape statements for the ingest's hot path, written as SQL once instead of compiled by the
ORM on every call.

Compiling a queryset cost more CPU than the database spent running it (the profile in
docs/benchmarks.md). These helpers build multi-row
statements from the models' own metadata, and each value is prepared by its model field
(`get_db_prep_save`: UUIDs, datetimes and JSON as each database stores them), so one statement
serves SQLite and PostgreSQL alike. No model instance is created or saved: no signals, no `pre_save`
(`auto_now` fields are given explicitly).
"""

import functools
from collections.abc import Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model


def _table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def _columns(model: type[Model], fields: tuple[str, ...]) -> tuple[list, list[str]]:
    """The model's fields named, and the internal type of the column each writes."""
    columns = [model._meta.get_field(name) for name in fields]
    return columns, [getattr(column, "target_field", column).get_internal_type() for column in columns]


# Values of these exact types go as they are to columns of these types: their fields' preparation
# returns them unchanged, and skipping it halves the cost of a statement's parameters.
_AS_IS = frozenset({str, int})
_PLAIN_COLUMNS = frozenset(
    {
        "CharField",
        "TextField",
        "IntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "BigAutoField",
    }
)


def _prepared(model: type[Model], fields: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> list[Any]:
    database = connections[DEFAULT_DB_ALIAS]  # resolved once, not per value through the proxy
    columns, types = _columns(model, fields)
    # Rows repeat values (one timestamp in several columns, one event in every row): each distinct
    # value of a column type is prepared once.
    done: dict[tuple[str, Any], Any] = {}
    prepared = []
    for row in rows:
        for column, kind, value in zip(columns, types, row, strict=True):
            if value is None or (kind in _PLAIN_COLUMNS and type(value) in _AS_IS):
                prepared.append(value)
            elif isinstance(value, dict | list):  # JSON: not hashable
                prepared.append(column.get_db_prep_save(value, database))
            else:
                key = (kind, value)
                if key not in done:
                    done[key] = column.get_db_prep_save(value, database)
                prepared.append(done[key])
    return prepared


def _batches(columns: list, rows: Sequence[Sequence[Any]]) -> list[Sequence[Sequence[Any]]]:
    """`rows` in batches within the database's limit on parameters per statement (PostgreSQL's
    protocol takes 65535), leaving a row's worth for the statement's other parameters."""
    size = max((connection.features.max_query_params or 65535) // len(columns) - 1, 1)
    return [rows[start : start + size] for start in range(0, len(rows), size)]


def rows_insert(
    *, model: type[Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], returning: str | None = None
) -> list[Any]:
    """INSERT `rows` (values in the order of `fields`), in one statement unless there are more than
    the database takes at once; returns the `returning` column of each row, in the order inserted
    (as Django's bulk_create relies on), or []."""
    fields = tuple(fields)
    columns, _ = _columns(model, fields)
    quote = connection.ops.quote_name
    names = ", ".join(quote(column.column) for column in columns)
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    suffix = "" if returning is None else f" RETURNING {quote(model._meta.get_field(returning).column)}"
    returned = []
    with connection.cursor() as cursor:
        for batch in _batches(columns, rows):
            sql = f"INSERT INTO {_table(model)} ({names}) VALUES {', '.join([row] * len(batch))}{suffix}"  # noqa: S608 (names from the models, values as parameters)
            cursor.execute(sql, _prepared(model, fields, batch))
            if returning is not None:
                returned += [value for (value,) in cursor.fetchall()]
    return returned


def objects_insert(*, objs: Sequence[Model]) -> None:
    """INSERT unsaved instances of one model, every field already holding its value, in as few
    statements as rows_insert; an auto-incremented primary key is set on each from RETURNING."""
    if not objs:
        return
    meta = objs[0]._meta
    auto = meta.pk if meta.pk.db_returning else None
    names = [field.attname for field in meta.concrete_fields if field is not auto]
    rows = [[getattr(obj, name) for name in names] for obj in objs]
    pks = rows_insert(model=type(objs[0]), fields=names, rows=rows, returning=auto and auto.attname)
    for position, obj in enumerate(objs):
        if auto is not None:
            obj.pk = pks[position]
        obj._state.adding = False


def db_value(*, model: type[Model], field: str, value: Any) -> Any:
    """`value` as the database stores `model`'s `field` (for a parameter written by hand)."""
    return model._meta.get_field(field).get_db_prep_save(value, connection)


def rows_update(
    *,
    model: type[Model],
    key: str,
    fields: Sequence[str],
    rows: Sequence[Sequence[Any]],
    extra: str = "",
    extra_params: Sequence[Any] = (),
    where: str = "",
    where_params: Sequence[Any] = (),
) -> set[Any]:
    """One `UPDATE … FROM (VALUES …)` setting, on the row whose `key` is each row's first value,
    `fields` to the others; `extra` adds assignments (SQL, e.g. `"n" = "n" + 1`) and `where` a
    condition on the table's own columns. Returns the keys of the rows it changed."""
    all_fields = (key, *fields)
    columns, _ = _columns(model, all_fields)
    quote = connection.ops.quote_name
    table, key_column = _table(model), quote(columns[0].column)
    aliases = [f"v{position}" for position in range(len(columns))]
    # PostgreSQL types a VALUES list from its values: a column of NULLs alone would be text, which
    # cannot be assigned to a timestamp. The first row's casts type every column.
    if connection.features.requires_casted_case_in_updates:
        first = "(" + ", ".join(f"CAST(%s AS {column.cast_db_type(connection)})" for column in columns) + ")"
    else:
        first = "(" + ", ".join(["%s"] * len(columns)) + ")"
    other = "(" + ", ".join(["%s"] * len(columns)) + ")"
    assignments = [
        f"{quote(column.column)} = v.{alias}" for column, alias in zip(columns[1:], aliases[1:], strict=True)
    ]
    if extra:
        assignments.append(extra)
    changed = set()
    with connection.cursor() as cursor:
        for batch in _batches(columns, rows):
            values = ", ".join([first, *[other] * (len(batch) - 1)])
            where_sql = f"{table}.{key_column} = v.{aliases[0]}" + (f" AND {where}" if where else "")
            sql = f"WITH v ({', '.join(aliases)}) AS (VALUES {values}) UPDATE {table} SET {', '.join(assignments)} FROM v WHERE {where_sql} RETURNING {table}.{key_column}"  # noqa: E501, S608 (names from the models, values as parameters)
            cursor.execute(sql, [*_prepared(model, all_fields, batch), *extra_params, *where_params])
            changed |= {value for (value,) in cursor.fetchall()}
    return changed
