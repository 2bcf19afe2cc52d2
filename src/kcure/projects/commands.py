"""``kcure project ...`` and ``kcure workspace serve``.

The custodian (the account that owns KCURE_HOME) runs project commands in its own process. Anyone
else's ``kcure project`` is a client of the workspace service, which knows them from the OS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kcure.core.config import load_config
from kcure.projects.application import ApplicationError
from kcure.projects.keys import ProjectKeyError
from kcure.projects.lifecycle import CLOSE_REASONS, Caller, ProjectRefused
from kcure.projects.workspace import ServiceError, handle, request, serve, socket_path, store_for


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "project",
        help="research projects: submit an application, review it, list, show and close projects",
        description="Applications are reviewed by the committee (conf/pipeline.yaml projects:). Who acts is "
        "the calling OS user; accounts other than the custodian's act through the workspace service.",
    )
    ps = p.add_subparsers(dest="project_command", required=True)
    s = ps.add_parser("submit", help="submit an application (YAML), or amend a submitted one")
    s.add_argument("file", type=Path)
    r = ps.add_parser("review", help="approve or reject the current version of an application")
    r.add_argument("project")
    verdict = r.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true")
    verdict.add_argument("--reject", action="store_true")
    verdict.add_argument(
        "--exception", action="store_true",
        help="accept the extract although its privacy gate fails (two reviewers must; the note is the reason)",
    )  # fmt: skip
    r.add_argument("--note", required=True, help="why (kept in the project's log)")
    pv = ps.add_parser("provision", help="build the approved project's extract from its release (custodian)")
    pv.add_argument("project")
    ps.add_parser("expire", help="close every project whose application has expired (custodian; run daily)")
    ps.add_parser("list", help="the projects you may see, with their state")
    sh = ps.add_parser("show", help="one project: its state and every transition")
    sh.add_argument("project")
    sh.add_argument("--json", action="store_true")
    c = ps.add_parser("close", help="close a project (custodian): its id can never be provisioned again")
    c.add_argument("project")
    c.add_argument("--reason", choices=CLOSE_REASONS, default="finished")
    p.set_defaults(func=cmd_project)

    _export_parsers(sub)

    w = sub.add_parser("workspace", help="the workspace service other OS accounts act through (custodian)")
    ws = w.add_subparsers(dest="workspace_command", required=True)
    sv = ws.add_parser("serve", help="serve project requests on a Unix socket until interrupted")
    sv.add_argument("--socket", type=Path, help="default: projects.socket in conf/pipeline.yaml")
    w.set_defaults(func=cmd_workspace)


def _export_parsers(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="export review: request the export of a query's result, review requests, list and fetch them",
        description="A result leaves a project only through export review: automatic disclosure checks, then "
        "two reviewers of the export committee (conf/pipeline.yaml projects.export_committee_group).",
    )
    es = e.add_subparsers(dest="export_command", required=True)
    rq = es.add_parser("request", help="ask for a result of an audited query (in your area) to be released")
    rq.add_argument("--project", required=True)
    rq.add_argument("file", help="the result's name, as written by kcure query --project ID ... --out NAME")
    rq.add_argument("--counts", default="", help="COL,...: columns that count people (checked against the threshold)")
    rq.add_argument("--description", default="", help="what the table is, for the reviewers")
    rq.add_argument(
        "--redact",
        action="store_true",
        help="suppress flagged cells (and enough others that none can be recovered), round counts",
    )
    rq.add_argument("--plot", help="KIND:X:Y[:GROUP] (KIND bar or line): a plot the service draws at release")
    rv = es.add_parser("review", help="approve or reject an export request (export committee)")
    rv.add_argument("request")
    v = rv.add_mutually_exclusive_group(required=True)
    v.add_argument("--approve", action="store_true")
    v.add_argument("--reject", action="store_true")
    rv.add_argument("--note", required=True, help="why (kept in the project's audit log)")
    ls = es.add_parser("list", help="a project's export requests and their state")
    ls.add_argument("--project", required=True)
    so = es.add_parser("show", help="one request: its query, table, redacted copy and check report")
    so.add_argument("request")
    so.add_argument("--json", action="store_true")
    fe = es.add_parser("fetch", help="copy a released export's files into a folder of yours")
    fe.add_argument("request")
    fe.add_argument("--to", type=Path, default=Path("."), help="folder (default: the current one)")
    e.set_defaults(func=cmd_export)

    a = sub.add_parser("audit", help="verify the projects' audit chains (custodian)")
    av = a.add_subparsers(dest="audit_command", required=True).add_parser(
        "verify", help="check every entry's link and MAC and the head; name the first broken entry"
    )
    av.add_argument("--project", help="one project (default: every project)")
    a.set_defaults(func=cmd_audit)


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    c = args.project_command
    if c == "submit":
        try:
            text = args.file.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or "not UTF-8"
            raise ProjectRefused(f"cannot read {args.file.name}: {why}") from None
        return {"application": text, "name": args.file.name}
    if c == "review":
        return {"project": args.project, "approve": bool(args.approve), "exception": bool(args.exception),
                "note": args.note}  # fmt: skip
    if c == "close":
        return {"project": args.project, "reason": args.reason}
    return {"project": getattr(args, "project", "")}


def _is_custodian(home: Path) -> bool:
    try:
        return home.stat().st_uid == os.getuid()
    except FileNotFoundError:
        return True  # nothing exists yet: whoever creates KCURE_HOME is its custodian
    except PermissionError:
        return False


def cmd_project(args: argparse.Namespace) -> int:
    cfg = load_config(args.conf)
    try:
        payload = _payload(args)
        if args.project_command in ("provision", "expire"):
            return _custodian_only(cfg, args)
        out = call(cfg, args.project_command, payload)
    except (ProjectRefused, ServiceError, ApplicationError, ProjectKeyError) as e:
        print(f"kcure project {args.project_command}: {e}", file=sys.stderr)
        return 1
    print(_render(args, out))
    return 0


def _custodian_only(cfg: Any, args: argparse.Namespace) -> int:
    from kcure.projects.provisioning import close_expired, provision, summary_line

    if not _is_custodian(cfg.home):
        raise ProjectRefused(f"kcure project {args.project_command} runs in the custodian's account only")
    store, caller = store_for(cfg, os.getuid()), Caller.this_process()
    if args.project_command == "expire":
        closed = close_expired(cfg, store, caller)
        print(f"{len(closed)} expired project(s) closed" + (f": {', '.join(closed)}" if closed else ""))
        return 0
    print(summary_line(provision(cfg, store, args.project, caller)))
    return 0


def call(cfg: Any, command: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Carry out a workspace command: in this process for the custodian, else through the service."""
    if _is_custodian(cfg.home):
        return handle(cfg, store_for(cfg, os.getuid()), Caller.this_process(), command, payload)
    return request(socket_path(cfg), command, payload)


def project_query(args: argparse.Namespace) -> int:
    """``kcure query --project ID SQL``: run by the service, shown here."""
    import duckdb
    import pyarrow as pa

    cfg = load_config(args.conf)
    payload = {"project": args.project, "sql": args.sql, "out": args.out, "show": args.max_rows}
    try:
        out = call(cfg, "query", payload)
    except (ProjectRefused, ServiceError) as e:
        print(f"kcure query: {e}", file=sys.stderr)
        return 1
    data = out["data"]
    if not args.out and data["columns"]:
        rows = [dict(zip(data["columns"], r, strict=True)) for r in data["rows"]]
        table = (
            pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.string()) for c in data["columns"]})
        )
        duckdb.connect().from_arrow(table).show(max_rows=args.max_rows)  # no analyst SQL runs here
    print(f"{out['message']} (audit entry {data['entry']})")
    return 0


def _export_payload(args: argparse.Namespace) -> dict[str, Any]:
    c = args.export_command
    if c == "request":
        counts = [x.strip() for x in args.counts.split(",") if x.strip()]
        return {"project": args.project, "file": args.file, "counts": counts, "description": args.description,
                "redact": bool(args.redact), "plot": args.plot}  # fmt: skip
    if c == "review":
        return {"request": args.request, "approve": bool(args.approve), "note": args.note}
    if c == "list":
        return {"project": args.project}
    return {"request": args.request}


def cmd_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.conf)
    c = args.export_command
    try:
        out = call(cfg, f"export_{c}", _export_payload(args))
        if c == "fetch":
            _write_fetched(args.to, out["data"]["files"], out["data"]["hashes"])
    except (ProjectRefused, ServiceError) as e:
        print(f"kcure export {c}: {e}", file=sys.stderr)
        return 1
    data = out.get("data")
    if c == "list":
        lines = [f"{'request':20} {'status':9} {'checks':9} {'approvals':10} {'by':10} file"]
        lines += [f"{d['request']:20} {d['status']:9} {d['checks']:9} {len(d['approvals'])}/{d['need']:<8} "
                  f"{d['by']:10} {d['file']}" for d in data or []]  # fmt: skip
        print("\n".join(lines))
        return 0
    if c == "show" and args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return 0
    if c == "fetch":
        print(f"{out['message']} written to {args.to}")
        return 0
    if c == "request" and data and data.get("status") == "refused":
        print(f"kcure export request: {out.get('message', '')}", file=sys.stderr)
        return 1
    print(out.get("message", ""))
    return 0


def _write_fetched(folder: Path, files: dict[str, str], hashes: dict[str, str]) -> None:
    """Write a released export's files as the caller, never over a file that is there."""
    import base64
    import hashlib

    folder.mkdir(parents=True, exist_ok=True)
    for name, b64 in files.items():
        if Path(name).name != name:
            raise ProjectRefused(f"the service sent a file name with a folder in it: {name[:60]!r}")
        data = base64.b64decode(b64)
        if name in hashes and hashlib.sha256(data).hexdigest() != hashes[name]:
            raise ProjectRefused(f"{name} does not match the hash in its release manifest")
        with (folder / name).open("xb") as f:
            f.write(data)


def cmd_audit(args: argparse.Namespace) -> int:
    from kcure.projects.audit import Audit

    cfg = load_config(args.conf)
    if not _is_custodian(cfg.home):
        print("kcure audit verify: runs in the custodian's account only", file=sys.stderr)
        return 1
    store = store_for(cfg, os.getuid())
    audit: Audit = store.audit
    try:
        projects = [store.folder(args.project).name] if args.project else store.ids()
    except ProjectRefused as e:
        print(f"kcure audit verify: {e}", file=sys.stderr)
        return 1
    broken = 0
    for project in projects:
        verdict, _ = audit.verify(project, store.folder(project) / "events.jsonl")
        broken += not verdict.ok
        print(verdict.line())
    print(f"{len(projects)} project(s) verified, {broken} broken (audit key {audit.key.fingerprint()})")
    return 1 if broken else 0


def _render(args: argparse.Namespace, out: dict[str, Any]) -> str:
    data = out.get("data")
    if args.project_command == "show" and args.json:
        return json.dumps(data, indent=2, ensure_ascii=False)
    if args.project_command == "list":
        rows = [f"{'project':15} {'status':12} {'version':>7}  title"]
        rows += [f"{d['project']:15} {d['status']:12} {d['version']:>7}  {d['title']}" for d in data or []]
        return "\n".join(rows)
    if args.project_command == "show" and data:
        lines = [
            f"project {data['project']}: {data['status']} (version {data['version']})",
            f"  title: {data['title']}",
            f"  people: {', '.join(data['people'])}",
            f"  approvals of this version: {', '.join(data['approvals']) or 'none'}",
        ]
        if data.get("note"):
            lines.append(f"  note: {data['note']}")
        lines.append("  log:")
        lines += [f"    {e['seq']:>3} {e['at']} {e['by']:<12} {e['action']} v{e['version']}" for e in data["events"]]
        return "\n".join(lines)
    return str(out.get("message", ""))


def cmd_workspace(args: argparse.Namespace) -> int:
    cfg = load_config(args.conf)
    path = args.socket or socket_path(cfg)
    try:
        serve(cfg, path, ready=lambda: print(f"workspace service on {path}", flush=True))
    except ServiceError as e:
        print(f"kcure workspace serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
