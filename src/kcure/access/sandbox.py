"""The query sandbox: one read-only SELECT over exactly one release's data files, and nothing else.

Every query that reaches a release through ``kcure`` runs on a connection made here:

* DuckDB may read exactly the release's data files, one by one (``allowed_paths``), then external
  access is switched off: no other file (staging, landing, secrets, /etc), no glob over folders,
  no network, no ``COPY``/``ATTACH``/``EXPORT`` writing anywhere, no extension installed or loaded;
* the configuration is then locked (``lock_configuration``): no ``SET``/``PRAGMA`` can undo that;
* an analyst's text must be exactly one statement, and a ``SELECT`` (``WITH … SELECT``, ``FROM``,
  ``DESCRIBE`` and ``SUMMARIZE`` are SELECTs to DuckDB); anything else is refused by name;
* threads, memory, run time and result rows are capped (``conf/pipeline.yaml`` ``query``); spilling
  goes to a private temporary folder removed afterwards;
* the process holds no secret in its environment while a query runs.

A refusal is a :class:`QueryRefused` whose message is one line naming the rule. A query that fails
while it runs is reported by its error class only: DuckDB's messages can quote values (a
conversion error prints the value it could not convert), so they go to the operator's debug log,
never to the analyst.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

#: Iceberg's primitive types as DuckDB's
DUCKDB = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "double": "DOUBLE", "date": "DATE"}
#: errors whose message is about the query's text or names, never about values: shown (one line)
TEXT_ERRORS = ("ParserException", "BinderException", "CatalogException", "PermissionException")
_SECRET_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|^AWS_|^AIRFLOW_CONN_|^KCURE_.*KEY", re.I)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class QueryRefused(ValueError):
    """The query was not run, or not finished: the message is one line naming the rule."""


@dataclass(frozen=True)
class Limits:
    threads: int = 2
    memory: str = "2GB"
    seconds: float = 300.0
    max_rows: int = 1_000_000
    max_sql_chars: int = 20_000
    max_bytes: int = 512 * 1024 * 1024  # the result, in memory: DuckDB's memory limit does not cover it

    @classmethod
    def from_config(cls, settings: dict[str, Any] | None) -> Limits:
        s = settings or {}
        return cls(
            threads=int(s.get("threads", cls.threads)),
            memory=str(s.get("memory_limit", cls.memory)),
            seconds=float(s.get("timeout_seconds", cls.seconds)),
            max_rows=int(s.get("max_result_rows", cls.max_rows)),
            max_sql_chars=int(s.get("max_sql_chars", cls.max_sql_chars)),
            max_bytes=int(s.get("max_result_mb", cls.max_bytes // 2**20)) * 2**20,
        )


@dataclass(frozen=True)
class TableFiles:
    """One table of a release: its data files and its columns (name, Iceberg type)."""

    files: tuple[str, ...]
    columns: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    view: str | None = None  # the view's own SELECT over its files (default: all of their rows and columns)


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def scrub_environment() -> None:
    """Remove secret-bearing variables from this process's environment (and its children's)."""
    for name in list(os.environ):
        if _SECRET_ENV.search(name):
            del os.environ[name]


@contextmanager
def connection(schemas: dict[str, dict[str, TableFiles]], limits: Limits) -> Iterator[Any]:
    """A locked-down DuckDB connection with one view per table over exactly its files.

    ``schemas`` maps a schema name (``main`` for a single release) to its tables.
    """
    import duckdb

    for name in [*schemas, *(t for tables in schemas.values() for t in tables)]:
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a schema or table name: {name[:40]!r}")
    spill = tempfile.mkdtemp(prefix="kcure-query-")  # 0700
    con = duckdb.connect(
        ":memory:",
        config={
            "autoload_known_extensions": False,
            "autoinstall_known_extensions": False,
            "allow_community_extensions": False,
            "threads": limits.threads,
            "memory_limit": limits.memory,
            "temp_directory": spill,
        },
    )
    try:
        files = [f for tables in schemas.values() for t in tables.values() for f in t.files]
        con.execute(f"SET allowed_paths = [{', '.join(_quote(f) for f in files)}]")
        for schema, tables in schemas.items():
            if schema != "main":
                con.execute(f'CREATE SCHEMA "{schema}"')
            for name, t in tables.items():
                con.execute(f'CREATE VIEW "{schema}".{name} AS {t.view or _view(t)}')
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        yield con
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)


def _view(t: TableFiles) -> str:
    if t.files:  # the files sit under release=<tag>/: no hive column, the table's own columns only
        return f"SELECT * FROM read_parquet([{', '.join(_quote(f) for f in t.files)}], hive_partitioning = false)"
    # a table published empty (nothing of its feed was staged): its columns, no rows
    return "SELECT " + ", ".join(f'CAST(NULL AS {DUCKDB[kind]}) AS "{col}"' for col, kind in t.columns) + " WHERE false"


def check_sql(sql: str, limits: Limits) -> str:
    """The one SELECT statement of ``sql``, or QueryRefused naming the rule it breaks."""
    import duckdb

    if len(sql) > limits.max_sql_chars:
        raise QueryRefused(f"refused: the query is longer than {limits.max_sql_chars:,} characters")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"refused: not valid SQL: {_first_line(exc)}") from None
    if not statements:
        raise QueryRefused("refused: the query is empty")
    if len(statements) > 1:
        raise QueryRefused(f"refused: one statement per query, not {len(statements)}")
    kind = statements[0].type.name
    if kind != "SELECT":
        raise QueryRefused(f"refused: only a read-only SELECT (or WITH ... SELECT) may run, not {kind}")
    return sql


def _first_line(exc: BaseException, limit: int = 200) -> str:
    line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return line if len(line) <= limit else line[:limit] + "…"


def run(con: Any, sql: str, limits: Limits) -> tuple[pa.Table, bool]:
    """Run one checked SELECT; the first ``max_rows`` rows as Arrow, and whether there were more."""
    import duckdb
    import pyarrow as pa

    check_sql(sql, limits)
    timer = threading.Timer(limits.seconds, con.interrupt)
    timer.start()
    try:
        reader = con.sql(sql).to_arrow_reader(min(limits.max_rows + 1, 10_000))
        batches, n, size = [], 0, 0
        for batch in reader:
            batches.append(batch)
            n += batch.num_rows
            size += batch.nbytes
            if size > limits.max_bytes:
                raise QueryRefused(f"refused: the result is larger than {limits.max_bytes // 2**20:,} MB")
            if n > limits.max_rows:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.InterruptException:
        raise QueryRefused(f"refused: the query ran longer than {limits.seconds:g} s") from None
    except duckdb.Error as exc:
        kind = type(exc).__name__
        if kind in TEXT_ERRORS:
            raise QueryRefused(f"refused: {_first_line(exc)}") from exc
        if kind == "OutOfMemoryException":
            raise QueryRefused(f"refused: the query needs more than {limits.memory} of memory") from exc
        raise QueryRefused(
            f"the query failed while it ran ({kind}); its message may quote values, so it is not shown"
        ) from exc
    finally:
        timer.cancel()
    more = table.num_rows > limits.max_rows
    return (table.slice(0, limits.max_rows) if more else table), more
