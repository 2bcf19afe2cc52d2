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

    w = sub.add_parser("workspace", help="the workspace service other OS accounts act through (custodian)")
    ws = w.add_subparsers(dest="workspace_command", required=True)
    sv = ws.add_parser("serve", help="serve project requests on a Unix socket until interrupted")
    sv.add_argument("--socket", type=Path, help="default: projects.socket in conf/pipeline.yaml")
    w.set_defaults(func=cmd_workspace)


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
        if _is_custodian(cfg.home):
            out = handle(cfg, store_for(cfg, os.getuid()), Caller.this_process(), args.project_command, payload)
        else:
            out = request(socket_path(cfg), args.project_command, payload)
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
