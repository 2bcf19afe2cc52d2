"""Project-scoped analysis: ``kcure query --project ID "SQL" [--out NAME]``, run by the workspace service.

The query runs in the sandbox (:mod:`kcure.access.sandbox`) over exactly the project's extract files,
its tables under their library names (RGST, T200, ...). Only the people on the project's application
may run it, and only while the project is provisioned. A result written with ``--out`` lands in the
caller's own area of the workspace (``workspace/users/<user>/``, the custodian's files: it leaves only
through export review), and every query, refused or run, is an entry of the project's audit log: who,
when, the SQL text, the release and provisioning it ran on, the row count and the result file's hash.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.access.sandbox import QueryRefused, TableFiles, connection, run
from kcure.projects.audit import file_sha256
from kcure.projects.lifecycle import Caller, ProjectRefused, State

if TYPE_CHECKING:
    import pyarrow as pa

    from kcure.core.config import Config
    from kcure.projects.lifecycle import ProjectStore

RESULT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}\.(csv|parquet)$")
TABLE = re.compile(r"^[A-Z][A-Z0-9_]*$")
ARROW_TO_ICEBERG = {"string": "string", "large_string": "string", "int32": "int", "int64": "long",
                    "double": "double", "date32[day]": "date"}  # fmt: skip


@dataclass(frozen=True)
class Workspace:
    """A project's workspace folders (all the custodian's)."""

    root: Path  # <projects>/<id>

    @property
    def extract(self) -> Path:
        return self.root / "workspace" / "extract"

    def area(self, user: str) -> Path:
        """``user``'s own results."""
        if not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", user):
            raise ProjectRefused(f"{user[:40]!r} is not a user name")
        return self.root / "workspace" / "users" / user

    def result(self, user: str, name: str) -> Path:
        if not RESULT_NAME.fullmatch(name or ""):
            raise ProjectRefused(
                f"{str(name)[:60]!r} is not a result name: a plain file name ending .csv or .parquet (no folders)"
            )
        return self.area(user) / name


def analyst_state(store: ProjectStore, project: str, caller: Caller) -> State:
    """The project, if ``caller`` is on its application and it is provisioned; refused alike otherwise,
    so that nobody learns which projects exist from a refusal."""
    state = store.state(project)
    if state.status == "none" or caller.user not in state.people:
        raise ProjectRefused(f"no project {project[:40]!r} that {caller.user} may query")
    if state.status != "provisioned":
        raise ProjectRefused(f"project {project} is {state.status}: only a provisioned project's extract is queried")
    return state


def last_provisioning(state: State) -> dict[str, Any]:
    done = [e for e in state.events if e["action"] == "provisioned"]
    return {
        "release": done[-1].get("release"),
        "provision": len(done),
        "manifest_sha256": done[-1].get("manifest_sha256"),
    }


def extract_tables(ws: Workspace) -> dict[str, TableFiles]:
    """Each table of the extract: its data files and columns."""
    import pyarrow.parquet as pq

    out = {}
    for folder in sorted(p for p in ws.extract.iterdir() if p.is_dir() and TABLE.fullmatch(p.name)):
        files = tuple(str(f) for f in sorted(folder.glob("*.parquet")))
        if not files:  # no file, no columns known: not a table the sandbox can show
            continue
        schema = pq.read_schema(files[0])
        out[folder.name] = TableFiles(
            files, tuple((f.name, ARROW_TO_ICEBERG.get(str(f.type), "string")) for f in schema)
        )
    return out


def write_result(table: pa.Table, path: Path) -> None:
    """The result, atomically, the custodian's alone."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".parquet":
        pq.write_table(table, tmp)
    else:
        pcsv.write_csv(table, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run_sql(cfg: Config, ws: Workspace, sql: str) -> tuple[pa.Table, bool]:
    """One SELECT in the sandbox over the project's extract: the rows (capped) and whether there were more."""
    from kcure.access.query import limits

    lim = limits(cfg)
    with connection({"main": extract_tables(ws)}, lim) as con:
        return run(con, sql, lim)


def query(
    cfg: Config, store: ProjectStore, project: str, caller: Caller, sql: str, out: str | None, show: int
) -> dict[str, Any]:
    """Run ``sql`` for ``caller`` in ``project``; log it; the reply (at most ``show`` rows to print)."""
    state = analyst_state(store, project, caller)
    ws = Workspace(store.folder(project))
    target = ws.result(caller.user, out) if out else None
    where = last_provisioning(state)
    detail: dict[str, Any] = {"sql": sql, **where}
    try:
        table, more = run_sql(cfg, ws, sql)
        detail.update(rows=table.num_rows, truncated=more)
        if target is not None:
            write_result(table, target)
            detail.update(out=target.name, sha256=file_sha256(target))
    except QueryRefused as e:
        store.note(project, caller, "query_refused", reason=str(e), **detail)
        raise
    except Exception as e:  # logged whatever it was; its message may quote values, so only its kind
        if target is not None:
            target.unlink(missing_ok=True)
        why = f"the query failed ({type(e).__name__})"
        store.note(project, caller, "query_refused", reason=why, **detail)
        raise QueryRefused(why) from None
    event = store.note(project, caller, "query", **detail).events[-1]
    shown = table.slice(0, max(0, show))
    return {
        "message": f"{table.num_rows:,} rows"
        + (f" written to {target.name}" if target else "")
        + (" (cut at the row limit: conf/pipeline.yaml query.max_result_rows)" if more else ""),
        "data": {
            "columns": shown.column_names,
            "types": [str(t) for t in shown.schema.types],
            "rows": [list(r.values()) for r in shown.to_pylist()],
            "total": table.num_rows,
            "truncated": more,
            "entry": event["seq"],
            "sha256": detail.get("sha256"),
        },
    }
