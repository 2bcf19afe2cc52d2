"""Export review: nothing leaves a project's workspace but a checked table that two reviewers approved.

``kcure export request --project ID NAME`` (an analyst of the project) names a result in their own
area. The service accepts it only if an audited query of this project wrote exactly that file (its
hash is in the log), runs the query again with its lineage (:mod:`kcure.projects.lineage`), and checks
the table before any human sees it (:mod:`kcure.projects.sdc`). The request, its copy of the file,
the checked copy (counts rounded; with ``--redact`` flagged cells suppressed) and the check report go to
the project's outbox,
``<projects>/<id>/exports/<REQ>/``. ``kcure export review REQ --approve|--reject --note`` is for members
of the export committee's OS group (``projects.export_committee_group``), never the requester nor anyone
on the project; at the second distinct approval (``projects.export_reviewers_required``, never fewer
than 2) the checked copy and any plot the service draws from it go to
``<projects>/<id>/released/<REQ>/`` with a manifest of hashes, reviewers and checks. ``kcure export
fetch REQ`` hands a released file to someone on the project. Every step is an entry of the audit log.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import itertools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core.zones import restricted_dir, write_json_atomic
from kcure.projects.analysis import Workspace, analyst_state, extract_tables, last_provisioning, write_result
from kcure.projects.audit import file_sha256
from kcure.projects.lifecycle import Caller, ProjectRefused, ProjectStore, State

if TYPE_CHECKING:
    import pyarrow as pa

    from kcure.core.config import Config
    from kcure.projects.sdc import Table, Thresholds

MAX_CONTRIBUTIONS = 5_000_000  # per-person contributions the dominance check reads into memory
REQUEST_ID = re.compile(r"^(kc\d{11})-x(\d{3,})$")
MIN_REVIEWERS = 2
PICTURES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".tif", ".tiff", ".bmp", ".webp", ".eps")
PLOT = re.compile(r"^(bar|line):([A-Za-z_][A-Za-z0-9_]*):([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?$")


@dataclass
class Request:
    id: str
    project: str
    by: str = ""
    file: str = ""
    status: str = "none"  # refused (by its checks) | pending | rejected | released
    checks: str = ""  # passed | redacted | refused
    description: str = ""
    approvals: list[str] = field(default_factory=list)
    reviewed_by: list[str] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    released: dict[str, str] = field(default_factory=dict)  # file -> sha256


def requests(state: State) -> dict[str, Request]:
    """Every export request of the project, replayed from its log."""
    out: dict[str, Request] = {}
    for e in state.events:
        rid = e.get("request")
        if not rid:
            continue
        a = e["action"]
        if a == "export_requested":
            out[rid] = Request(rid, state.project, e["by"], e.get("file", ""),
                               "refused" if e.get("checks") == "refused" else "pending", e.get("checks", ""),
                               e.get("description", ""))  # fmt: skip
        elif rid in out and a in ("export_approved", "export_rejected"):
            r = out[rid]
            r.reviewed_by.append(e["by"])
            r.notes.append({"by": e["by"], "verdict": a.removeprefix("export_"), "note": e.get("note", "")})
            if a == "export_rejected":
                r.status = "rejected"
            else:
                r.approvals.append(e["by"])
        elif rid in out and a == "export_released":
            out[rid].status, out[rid].released = "released", dict(e.get("files", {}))
    return out


def settings(cfg: Config) -> tuple[str, int]:
    s = cfg.pipeline.get("projects") or {}
    return str(s.get("export_committee_group", "kcure-output-checkers")), max(
        MIN_REVIEWERS, int(s.get("export_reviewers_required", MIN_REVIEWERS))
    )


def thresholds(cfg: Config) -> Thresholds:
    from kcure.projects.sdc import Thresholds

    p = cfg.privacy
    return Thresholds(p.min_cell_count, p.rounding, p.dominance_top, p.dominance_share)


def key_names(cfg: Config) -> set[str]:
    """Every column that holds a pseudonymous key of the library (and so of an extract)."""
    return {c.name.lower() for t in cfg.library.tables.values() for c in t.columns
            if c.rule in ("person_key", "substitute")} | {"sn_key"}  # fmt: skip


def _folder(store: ProjectStore, project: str, kind: str, rid: str) -> Path:
    return store.folder(project) / kind / rid


def _read(path: Path) -> pa.Table:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    return pq.read_table(path) if path.suffix == ".parquet" else pcsv.read_csv(path)


def _rows_as_text(table: pa.Table) -> list[tuple[str, ...]]:
    """The rows as sorted tuples of text: a CSV read back and the typed query result compare equal."""

    def text(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return sorted(tuple(text(v) for v in row.values()) for row in table.to_pylist())


def _source(state: State, user: str, name: str, sha: str) -> dict[str, Any]:
    for e in reversed(state.events):
        if e["action"] == "query" and e["by"] == user and e.get("out") == name:
            if e.get("sha256") == sha:
                return e
            break
    raise ProjectRefused(f"{name} is not a file an audited query of this project wrote (its hash is not in the log)")


def _lineage_tables(ws: Workspace) -> dict[str, Any]:
    """The extract as the lineage reads it: a claim-line table without SN_KEY (T300, T400, T530) gets its
    claim's SN_KEY through MID from T200, so the people behind its rows are counted too."""
    from kcure.access.sandbox import TableFiles, _view

    tables = extract_tables(ws)
    keyed = {n for n, t in tables.items() if "SN_KEY" in {c for c, _ in t.columns}}
    out = {}
    for name, t in tables.items():
        cols = {c for c, _ in t.columns}
        if name not in keyed and "MID" in cols and "T200" in keyed and name > "T200":
            claims = "(SELECT DISTINCT MID, SN_KEY FROM main.T200)"
            view = f"SELECT x.*, k.SN_KEY FROM ({_view(t)}) x LEFT JOIN {claims} k USING (MID)"
            t = TableFiles(t.files, t.columns, view)
        out[name] = t
    return out


def _run_lineage(cfg: Config, ws: Workspace, query: Any, rows: int) -> tuple[Any, Any] | None:
    """The plan over every person key of the outer FROM that binds, and its result; None: none binds."""
    from kcure.access.query import limits
    from kcure.access.sandbox import QueryRefused, connection, run

    lim = limits(cfg)
    big = dataclasses.replace(lim, max_rows=max(lim.max_rows, rows + 1), max_sql_chars=lim.max_sql_chars * 8)
    with connection({"main": _lineage_tables(ws)}, big) as con:
        persons: list[str | None] = []
        for person in query.candidates:
            if person is None and persons:
                break  # unqualified only when no alias of the outer FROM has a person key
            try:
                run(con, f"SELECT * FROM ({query.plan([person]).sql}) LIMIT 0", big)
                persons.append(person)
            except QueryRefused:
                continue
        if not persons:
            return None
        plan = query.plan(persons)
        got, _ = run(con, plan.sql, big)
    return plan, got.rename_columns([*got.column_names[: len(plan.columns)], *plan.extras])  # by position


def lineage_table(cfg: Config, ws: Workspace, sql: str, file_table: pa.Table, declared: set[str]) -> tuple[Table, str]:
    """The result as its query gives it now, with the people behind each row (the fewest any person key
    of the outer FROM counts), its amounts' largest shares and contributors, its raw aggregates and its
    grouping; or, when no lineage can be established, the file with no people, and why."""
    from kcure.projects.lineage import NoLineage, parse
    from kcure.projects.sdc import Table, classify

    unknown = Table(file_table, classify(file_table, {}, declared))
    try:
        query = parse(sql)
    except NoLineage as e:
        return unknown, str(e)
    ran = _run_lineage(cfg, ws, query, file_table.num_rows)
    if ran is None:
        return unknown, "no SN_KEY is visible in the query's outermost FROM, so the people behind each row are unknown"
    plan, got = ran
    data = got.select(list(range(len(plan.columns))))
    if _rows_as_text(data) != _rows_as_text(file_table):
        return unknown, "the query gives other rows now (the extract was provisioned again): run it again"
    kinds = classify(data, {data.column_names[i]: c.kind for i, c in enumerate(plan.columns)}, declared)
    try:
        return _with_lineage(cfg, data, kinds, plan, got), ""
    except ProjectRefused as e:
        return unknown, str(e)


def _with_lineage(cfg: Config, data: Any, kinds: dict[str, str], plan: Any, got: Any) -> Table:
    import pyarrow.compute as pc

    from kcure.projects.lineage import CONTRIB, GROUP_KEY, GROUPED, PEOPLE, RAW, combined, dominance, profile
    from kcure.projects.sdc import Table

    names = data.column_names
    counted = [got.column(f"{PEOPLE}{j}").to_pylist() for j in range(plan.persons)]
    people = [min(int(v or 0) for v in row) for row in zip(*counted, strict=True)]
    top = thresholds(cfg).dominance_top
    shares, contributors = {}, {}
    parts = {}  # (person key j, amount slot) -> contributions per row
    for slot, pos in enumerate(plan.amounts):
        lists = [got.column(f"{CONTRIB}{j}_{slot}") for j in range(plan.persons)]
        if sum(pc.sum(pc.list_value_length(c)).as_py() or 0 for c in lists) > MAX_CONTRIBUTIONS:
            raise ProjectRefused(f"{names[pos]} sums more than {MAX_CONTRIBUTIONS:,} values: too many to check")
        parts.update({(j, slot): c.to_pylist() for j, c in enumerate(lists)})
        rows = list(zip(*[profile(parts[j, slot], top) for j in range(plan.persons)], strict=True))
        shares[names[pos]] = [max((v[0] for v in row if v[0] is not None), default=None) for row in rows]
        contributors[names[pos]] = [min(v[1] for v in row) for row in rows]
    for s1, s2 in itertools.combinations(range(len(plan.amounts)), 2):  # their sum and difference too
        for j in range(plan.persons):
            for sign in (1.0, -1.0):
                pair = dominance(combined(parts[j, s1], parts[j, s2], sign), top)
                for pos in (plan.amounts[s1], plan.amounts[s2]):
                    shares[names[pos]] = [max(a, b) if a is not None and b is not None else (a if b is None else b)
                                          for a, b in zip(shares[names[pos]], pair, strict=True)]  # fmt: skip
    raw = {names[pos]: got.column(f"{RAW}{pos}").to_pylist() for pos, c in enumerate(plan.columns) if c.kind != "label"}
    grouping = None
    width = sum(1 for c in plan.extras if c.startswith(GROUPED))
    if width:
        flags = [got.column(f"{GROUPED}{i}").to_pylist() for i in range(width)]
        keys = [got.column(f"{GROUP_KEY}{i}").to_pylist() for i in range(width)]
        grouping = [[(bool(flags[i][r]), str(keys[i][r])) for i in range(width)] for r in range(got.num_rows)]
    return Table(data, kinds, people, shares, raw, grouping, contributors)


def _earlier(store: ProjectStore, project: str, reqs: dict[str, Request]) -> list[tuple[str, pa.Table, dict[str, str]]]:
    out = []
    for r in reqs.values():
        if r.status not in ("released", "pending"):
            continue
        folder = _folder(store, project, "exports", r.id)
        meta = json.loads((folder / "request.json").read_text(encoding="utf-8"))
        out.append((r.id, _read(folder / meta["file"]), dict(meta.get("kinds", {}))))  # exact: the reviewers' view
    return out


def request(
    cfg: Config, store: ProjectStore, project: str, caller: Caller, name: str, *, counts: list[str],
    description: str, redact: bool, plot: str | None,
) -> dict[str, Any]:  # fmt: skip
    """File an export request; the reply says what the checks found (``data.status``)."""
    from kcure.projects.sdc import check

    if Path(name or "").suffix.lower() in PICTURES:
        raise ProjectRefused("pictures leave only as plots the service redraws from an approved table: "
                             "request the table with --plot bar|line:X:Y[:GROUP]")  # fmt: skip
    state = analyst_state(store, project, caller)
    ws = Workspace(store.folder(project))
    path = ws.result(caller.user, name)
    if not path.is_file():
        raise ProjectRefused(f"{name} is not among {caller.user}'s results in {project}")
    sha = file_sha256(path)
    source = _source(state, caller.user, name, sha)
    file_table = _read(path)
    unknown = [c for c in counts if c not in file_table.column_names]
    if unknown:
        raise ProjectRefused(f"--counts names columns {name} does not have: {', '.join(unknown)[:200]}")
    spec = _plot(plot, file_table) if plot else None
    table, why = lineage_table(cfg, ws, str(source["sql"]), file_table, set(counts))
    reqs = requests(state)
    report, checked = check(table, table.kinds, key_names(cfg), thresholds(cfg), _earlier(store, project, reqs), redact)
    if why:
        for r in report.rules:
            if r.name == "row_level":
                r.message = why
    with store.locked(project) as s:
        n = 1 + sum(1 for e in s.events if e["action"] == "export_requested")
        rid = f"{project}-x{n:03d}"
        folder = restricted_dir(_folder(store, project, "exports", rid))
        shutil.copyfile(path, folder / name)
        meta: dict[str, Any] = {
            "request": rid, "project": project, "by": caller.user, "file": name, "sha256": sha,
            "query_entry": source["seq"], "sql": source["sql"], "description": description[:2000],
            "counts": counts, "redact": redact, "plot": spec, "kinds": table.kinds,
            "people_per_row": table.people, **last_provisioning(s),
        }  # fmt: skip
        if checked is not None:
            meta["checked"] = f"checked-{name}"
            write_result(checked, folder / meta["checked"])
            meta["checked_sha256"] = file_sha256(folder / meta["checked"])
        checks = report.to_dict()
        write_json_atomic(folder / "checks.json", checks, sort_keys=False)
        (folder / "checks.md").write_text(render_checks(meta, checks), encoding="utf-8")
        write_json_atomic(folder / "request.json", meta, sort_keys=False)
        store.append(s, caller, "export_requested", request=rid, file=name, sha256=sha, query_entry=source["seq"],
                     checks=report.status, checked_sha256=meta.get("checked_sha256"),
                     description=description[:2000], failed=[r.name for r in report.failed()])  # fmt: skip
    failed = report.failed()
    if report.status == "refused":
        what = "; ".join(f"{r.name}: {r.message}" for r in failed)
        hint = (" (--redact suppresses these cells)" if all(r.name in ("small_cells", "small_rows", "dominance")
                                                             for r in failed) else "")  # fmt: skip
        message = f"{rid} refused by the automatic checks: {what}{hint}"
    else:
        _, need = settings(cfg)
        done = "passed its checks" if report.status == "passed" else "redacted"
        message = f"{rid} {done} (counts rounded to {cfg.privacy.rounding}); awaiting {need} reviews"
    return {"message": message, "data": {"request": rid, "status": report.status, "checks": checks}}


def _plot(spec: str, table: pa.Table) -> dict[str, Any]:
    m = PLOT.fullmatch(spec or "")
    if not m:
        raise ProjectRefused("--plot is KIND:X:Y[:GROUP], KIND bar or line, each a column of the table")
    kind, x, y, group = m.groups()
    missing = [c for c in (x, y, group) if c and c not in table.column_names]
    if missing:
        raise ProjectRefused(f"--plot names columns the table does not have: {', '.join(missing)}")
    return {"kind": kind, "x": x, "y": y, "group": group}


def _project_of(rid: str) -> str:
    m = REQUEST_ID.fullmatch(rid or "")
    if not m:
        raise ProjectRefused(f"{str(rid)[:40]!r} is not an export request id (kcYYYYMMDDNNN-xNNN)")
    return m.group(1)


def _find(state: State, rid: str) -> Request:
    req = requests(state).get(rid)
    if req is None:
        raise ProjectRefused(f"no export request {rid}")
    return req


def _request(store: ProjectStore, rid: str) -> tuple[State, Request]:
    state = store.state(_project_of(rid))
    return state, _find(state, rid)


def _is_reviewer(cfg: Config, caller: Caller) -> bool:
    from kcure.projects.workspace import group_gid

    gid = group_gid(settings(cfg)[0])
    return gid is not None and gid in caller.groups


def review(cfg: Config, store: ProjectStore, rid: str, caller: Caller, *, approve: bool, note: str) -> dict[str, Any]:
    """One reviewer's decision; at the required number of approvals the request is released."""
    group, need = settings(cfg)
    if not _is_reviewer(cfg, caller):
        raise ProjectRefused(f"{caller.user} is not in the export committee's group {group}")
    if not note.strip():
        raise ProjectRefused("a review needs a note saying why")
    project = _project_of(rid)
    if project not in store.ids():  # refused before the lock, which would make the project's folder
        raise ProjectRefused(f"no export request {rid}")
    with store.locked(project) as s:  # the log is read once, under the lock
        req = _find(s, rid)
        if caller.user == req.by:
            raise ProjectRefused(f"{caller.user} requested {rid}: the requester cannot review their own request")
        if caller.user in s.people:
            raise ProjectRefused(f"{caller.user} is on project {s.project}: they cannot review its exports")
        if req.status != "pending":
            why = "its automatic checks refused it" if req.status == "refused" else f"it is {req.status}"
            raise ProjectRefused(f"{rid} cannot be reviewed: {why}")
        if caller.user in req.reviewed_by:
            raise ProjectRefused(f"{caller.user} has already reviewed {rid}")
        store.append(
            s, caller, "export_approved" if approve else "export_rejected", request=rid, note=note.strip()[:2000]
        )
        req = requests(s)[rid]
        if approve and len(req.approvals) >= need:
            files = _release(store, s.project, rid, req)
            store.append(s, caller, "export_released", request=rid, files=files)
            message = f"{caller.user} approved {rid} ({len(req.approvals)} of {need}): released {', '.join(files)}"
            return {"message": message, "data": {"request": rid, "status": "released", "files": files}}
    verdict = "approved" if approve else "rejected"
    status = "rejected" if not approve else "pending"
    return {"message": f"{caller.user} {verdict} {rid} ({len(req.approvals)} of {need} approvals): it is {status}",
            "data": {"request": rid, "status": status}}  # fmt: skip


def _release(store: ProjectStore, project: str, rid: str, req: Request) -> dict[str, str]:
    outbox = _folder(store, project, "exports", rid)
    meta = json.loads((outbox / "request.json").read_text(encoding="utf-8"))
    source, expected = outbox / meta["checked"], meta["checked_sha256"]
    if file_sha256(source) != expected:
        raise ProjectRefused(f"{rid}: the file in the outbox is not the one that was checked (its hash differs)")
    new = _folder(store, project, "released", f".{rid}.new")
    shutil.rmtree(new, ignore_errors=True)
    restricted_dir(new)
    shutil.copyfile(source, new / meta["file"])
    files = {meta["file"]: file_sha256(new / meta["file"])}
    if meta.get("plot"):
        svg = new / f"{Path(meta['file']).stem}.svg"
        svg.write_text(draw(_read(source), meta["plot"], meta.get("description") or meta["file"]), encoding="utf-8")
        files[svg.name] = file_sha256(svg)
    checks = json.loads((outbox / "checks.json").read_text(encoding="utf-8"))
    manifest = {
        "request": rid, "project": project, "requested_by": req.by, "description": meta.get("description"),
        "query_entry": meta["query_entry"], "release": meta.get("release"), "provision": meta.get("provision"),
        "files": files, "reviewers": req.approvals, "notes": req.notes,
        "checks": {"status": checks["status"], "rules": {r["name"]: r["status"] for r in checks["rules"]}},
    }  # fmt: skip
    write_json_atomic(new / "manifest.json", manifest, sort_keys=False)
    os.replace(new, _folder(store, project, "released", rid))
    return files


def visible(cfg: Config, store: ProjectStore, state: State, caller: Caller) -> bool:
    from kcure.projects import workspace

    return _is_reviewer(cfg, caller) or workspace.visible(store, caller, state)


def listing(cfg: Config, store: ProjectStore, project: str, caller: Caller) -> dict[str, Any]:
    state = store.state(project)
    if state.status == "none" or not visible(cfg, store, state, caller):
        raise ProjectRefused(f"no project {project[:40]!r} that {caller.user} may see")
    _, need = settings(cfg)
    rows = [
        {"request": r.id, "by": r.by, "file": r.file, "checks": r.checks, "status": r.status,
         "approvals": r.approvals, "need": need, "description": r.description}
        for r in requests(state).values()
    ]  # fmt: skip
    return {"message": f"{len(rows)} export request{'s' if len(rows) != 1 else ''}", "data": rows}


def show(cfg: Config, store: ProjectStore, rid: str, caller: Caller) -> dict[str, Any]:
    """What a reviewer reads: the request, the query, the table and its checked copy, the checks, and
    the project's earlier exports beside it."""
    state, req = _request(store, rid)
    if not visible(cfg, store, state, caller):
        raise ProjectRefused(f"no export request {rid}")
    folder = _folder(store, state.project, "exports", rid)
    meta = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    out = {"request": meta, "state": req.__dict__, "checks": json.loads((folder / "checks.json").read_text()),
           "table": _read(folder / meta["file"]).to_pylist(),
           "checked": _read(folder / meta["checked"]).to_pylist() if meta.get("checked") else None,
           "earlier": [{"request": r.id, "file": r.file, "status": r.status, "description": r.description}
                       for r in requests(state).values() if r.id != rid]}  # fmt: skip
    return {"message": (folder / "checks.md").read_text(encoding="utf-8"), "data": out}


def fetch(cfg: Config, store: ProjectStore, rid: str, caller: Caller) -> dict[str, Any]:
    """A released export's files, for someone on the project."""
    state, req = _request(store, rid)
    if caller.user not in state.people:
        raise ProjectRefused(f"no export request {rid} that {caller.user} may fetch")
    if req.status != "released":
        raise ProjectRefused(f"{rid} is {req.status}: only a released export is fetched")
    folder = _folder(store, state.project, "released", rid)
    files = {}
    for name in [*req.released, "manifest.json"]:
        files[name] = base64.b64encode((folder / name).read_bytes()).decode("ascii")
    store.note(state.project, caller, "export_fetched", request=rid, files=sorted(req.released))
    return {"message": f"{rid}: {len(files)} files", "data": {"files": files, "hashes": req.released}}


def _md(text: Any) -> str:
    """Text an analyst wrote, as one inert line of a Markdown table cell: no new row, no markup."""
    return html.escape(" ".join(str(text).split())).replace("|", "&#124;").replace("`", "&#96;")


def render_checks(meta: dict[str, Any], checks: dict[str, Any]) -> str:
    """The check report as the reviewers read it (Markdown). The query is shown whole, in a fence
    longer than any run of backticks in it; the analyst's words cannot add rows or markup."""
    sql = str(meta["sql"])
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", sql)), default=0))
    lines = [f"# Export request {meta['request']}: {checks['status']}", "",
             f"- project {meta['project']}, requested by {meta['by']}, file {_md(meta['file'])} "
             f"(sha256 {meta['sha256'][:16]}...)",
             f"- description: {_md(meta.get('description') or '-')}",
             f"- made by audit entry {meta['query_entry']}:", "", f"{fence}sql", sql, fence, "",
             "| rule | result | detail | cells |", "|---|---|---|---|"]  # fmt: skip
    for r in checks["rules"]:
        cells = ", ".join(f"row {c['row']} {_md(c['column'])}" for c in r["cells"][:12])
        more = f" (+{len(r['cells']) - 12})" if len(r["cells"]) > 12 else ""
        lines.append(f"| {r['name']} | {r['status']} | {_md(r['message'])} | {cells}{more} |")
    return "\n".join(lines) + "\n"


def draw(table: pa.Table, spec: dict[str, Any], title: str) -> str:
    """An SVG bar or line plot of ``table`` (suppressed cells are left out), drawn by the service."""
    rows = [r for r in table.to_pylist() if isinstance(r.get(spec["y"]), int | float)]
    groups: dict[str, list[tuple[Any, float]]] = {}
    for r in rows:
        groups.setdefault(str(r[spec["group"]]) if spec.get("group") else "", []).append(
            (r[spec["x"]], float(r[spec["y"]]))
        )
    xs = sorted({x for pts in groups.values() for x, _ in pts}, key=lambda v: (str(type(v)), v))
    w, h, pad = 640, 360, 48
    top = max([y for pts in groups.values() for _, y in pts] + [1.0])
    step = (w - 2 * pad) / max(1, len(xs))
    colors = ["#3b6ea8", "#d9822b", "#4c9a5f", "#a8443b", "#7a5ca8", "#777777"]
    E = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="{E(title)}"><text x="{pad}" y="20" font-size="13">{E(title)}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>']  # fmt: skip
    for i, x in enumerate(xs):
        parts.append(f'<text x="{pad + step * (i + 0.5):.1f}" y="{h - pad + 16}" font-size="10" '
                     f'text-anchor="middle">{E(str(x))}</text>')  # fmt: skip
    for g, (name, pts) in enumerate(sorted(groups.items())):
        color = colors[g % len(colors)]
        coords = [(pad + step * (xs.index(x) + 0.5), h - pad - (h - 2 * pad) * y / top, y) for x, y in pts]
        if spec["kind"] == "bar":
            bw = step / (len(groups) + 1)
            for cx, cy, _ in coords:
                parts.append(f'<rect x="{cx - step / 2 + bw * (g + 0.5):.1f}" y="{cy:.1f}" width="{bw:.1f}" '
                             f'height="{h - pad - cy:.1f}" fill="{color}"/>')  # fmt: skip
        else:
            path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy, _ in sorted(coords))
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        if name:
            parts.append(f'<text x="{w - pad}" y="{40 + 14 * g}" font-size="11" fill="{color}" '
                         f'text-anchor="end">{E(name)}</text>')  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
