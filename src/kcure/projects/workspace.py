"""The workspace service: the custodian's process that other OS accounts act through.

Project state belongs to the custodian's account and nobody else can read or write it, so committee
members and a project's people never touch it directly. They run the same ``kcure project`` commands,
which, when the caller does not own KCURE_HOME, send the request over a Unix socket to this service.
The service learns who is calling from the kernel (``SO_PEERCRED``: the peer's uid, and its groups
from ``/proc``), never from the request, then applies the same rules as a local call.

One request and one reply per connection, each a line of JSON: ``{"command": ..., "args": {...}}`` and
``{"ok": true|false, "message": ..., "data": ...}``. A refusal is one line naming the rule.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import socketserver
import stat
import struct
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.access.sandbox import QueryRefused
from kcure.projects.application import ApplicationError, parse_application
from kcure.projects.audit import Audit
from kcure.projects.lifecycle import Caller, ProjectRefused, ProjectStore, Rules, State

if TYPE_CHECKING:
    from kcure.core.config import Config

CUSTODIAN_GROUP = "@custodian"
MAX_REQUEST = 1 << 20  # an application is a few KiB
COMMANDS = ("submit", "review", "list", "show", "close", "query",
            "export_request", "export_review", "export_list", "export_show", "export_fetch")  # fmt: skip
# provisioning, expiry and audit verification run in the custodian's own process only


class ServiceError(Exception):
    """The service could not be reached, or answered with a refusal (the message is its one line)."""


def settings(cfg: Config) -> dict[str, Any]:
    return dict(cfg.pipeline.get("projects") or {})


def socket_path(cfg: Config) -> Path:
    return cfg.project_path("socket", "run/workspace.sock", env="KCURE_WORKSPACE_SOCKET")


def group_gid(group: str) -> int | None:
    """A committee's OS group id; None when the group does not exist here (then nobody is in it)."""
    if group == CUSTODIAN_GROUP:  # the demo environment only: the custodian's own group reviews
        return os.getgid()
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def visible(store: ProjectStore, caller: Caller, state: State) -> bool:
    """The custodian and the committee see every project; a project's own people see theirs."""
    r = store.rules
    committee = r.committee_gid is not None and r.committee_gid in caller.groups
    return caller.uid == r.custodian_uid or committee or caller.user in state.people


def store_for(cfg: Config, custodian_uid: int) -> ProjectStore:
    s = settings(cfg)
    group = str(s.get("committee_group", "kcure-committee"))
    rules = Rules(custodian_uid, group_gid(group), group, int(s.get("reviewers_required", 2)))
    return ProjectStore(cfg.home / "projects", rules, Audit.for_config(cfg))


def _summary(s: State) -> dict[str, Any]:
    return {k: v for k, v in asdict(s).items() if k != "events"}


def handle(cfg: Config, store: ProjectStore, caller: Caller, command: str, args: dict[str, Any]) -> dict[str, Any]:
    """Carry out one command for ``caller``; ProjectRefused / ApplicationError say why not."""
    if command == "submit":
        data = str(args.get("application", "")).encode("utf-8")
        name = Path(str(args.get("name", "application.yaml"))).name[:80]
        app = parse_application(data, name, cfg.library, cfg.privacy.window)
        state = store.submit(app, data, caller)
        what = "amended: version" if state.version > 1 else "submitted: version"
        need = store.rules.reviewers_required
        return {"message": f"{app.project} {what} {state.version}, awaiting {need} reviews", "data": _summary(state)}
    if command == "review" and args.get("exception"):
        state = store.exception(str(args.get("project", "")), caller, str(args.get("note", "")))
        n, need = len(state.exceptions), store.rules.reviewers_required
        return {"message": f"{caller.user} recorded an exception for {state.project} v{state.version} "
                           f"({n} of {need})", "data": _summary(state)}  # fmt: skip
    if command == "review":
        state = store.review(str(args.get("project", "")), caller, approve=bool(args.get("approve")),
                             note=str(args.get("note", "")))  # fmt: skip
        verdict = "approved" if args.get("approve") else "rejected"
        n, need = len(state.approvals), store.rules.reviewers_required
        return {"message": f"{caller.user} {verdict} {state.project} v{state.version} ({n} of {need} approvals): "
                           f"it is {state.status}", "data": _summary(state)}  # fmt: skip
    if command == "close":
        from kcure.projects.provisioning import close

        state = close(cfg, store, str(args.get("project", "")), caller, str(args.get("reason", "")))
        return {"message": f"{state.project} closed ({state.note})", "data": _summary(state)}
    if command == "query":
        from kcure.projects.analysis import query

        out = args.get("out")
        return query(cfg, store, str(args.get("project", "")), caller, str(args.get("sql", "")),
                     str(out) if out else None, int(args.get("show", 40)))  # fmt: skip
    if command.startswith("export_"):
        return _export(cfg, store, caller, command.removeprefix("export_"), args)
    if command == "list":
        rows = [_summary(s) for s in map(store.state, store.ids()) if visible(store, caller, s)]
        return {"message": f"{len(rows)} project{'s' if len(rows) != 1 else ''}", "data": rows}
    if command == "show":
        state = store.state(str(args.get("project", "")))
        if state.status == "none" or not visible(store, caller, state):
            raise ProjectRefused(f"no project {str(args.get('project', ''))[:40]!r} that {caller.user} may see")
        return {"message": state.project, "data": {**_summary(state), "events": state.events}}
    raise ProjectRefused(f"unknown command {command[:40]!r} (one of {', '.join(COMMANDS)})")


def _export(cfg: Config, store: ProjectStore, caller: Caller, command: str, args: dict[str, Any]) -> dict[str, Any]:
    from kcure.projects import exports

    rid, project = str(args.get("request", "")), str(args.get("project", ""))
    if command == "request":
        plot = args.get("plot")
        return exports.request(cfg, store, project, caller, str(args.get("file", "")),
                               counts=[str(c) for c in args.get("counts") or []],
                               description=str(args.get("description", "")), redact=bool(args.get("redact")),
                               plot=str(plot) if plot else None)  # fmt: skip
    if command == "review":
        return exports.review(
            cfg, store, rid, caller, approve=bool(args.get("approve")), note=str(args.get("note", ""))
        )
    if command == "list":
        return exports.listing(cfg, store, project, caller)
    if command == "show":
        return exports.show(cfg, store, rid, caller)
    return exports.fetch(cfg, store, rid, caller)


# --- the service ---------------------------------------------------------------------------------------


def peer(conn: socket.socket) -> Caller:
    """The connecting process's uid and groups, from the kernel."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    groups = {gid}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) != uid:
                return Caller.of_uid(uid, frozenset({gid}))  # the pid was reused: trust only the kernel's gid
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    except OSError:
        pass
    return Caller.of_uid(uid, frozenset(groups))


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.request.settimeout(30)
        try:
            line = self.rfile.readline(MAX_REQUEST + 1)
        except OSError:
            return
        self.wfile.write((json.dumps(self._answer(line), default=str) + "\n").encode())

    def _answer(self, line: bytes) -> dict[str, Any]:
        if len(line) > MAX_REQUEST:
            return {"ok": False, "message": "the request is too large"}
        try:
            req = json.loads(line or b"{}")
            command, args = str(req.get("command", "")), dict(req.get("args") or {})
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            return {"ok": False, "message": "not a workspace request"}
        try:
            return {"ok": True, **handle(self.server.cfg, self.server.store, peer(self.request), command, args)}
        except (ProjectRefused, ApplicationError, QueryRefused) as e:
            return {"ok": False, "message": str(e)}
        except Exception as e:  # its message may quote data: the caller learns its kind, the log where it was
            import traceback

            frame = traceback.extract_tb(e.__traceback__)[-1]
            print(f"workspace: {command[:40]} failed: {type(e).__name__} at {frame.filename}:{frame.lineno}",
                  file=sys.stderr, flush=True)  # fmt: skip
            return {"ok": False, "message": f"the service could not do that ({type(e).__name__})"}


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, cfg: Config, store: ProjectStore) -> None:
        self.cfg, self.store = cfg, store
        super().__init__(str(path), _Handler)


def serve(cfg: Config, path: Path | None = None, ready: Any = None) -> None:
    """Serve until interrupted. The socket is connectable by every local account: who may do what is
    decided per request from the caller's OS identity."""
    path = path or socket_path(cfg)
    cfg.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the custodian's, before any client asks
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o755)  # the process umask is 077
    if path.parent.is_relative_to(cfg.home):  # clients must reach the socket: traversal, never listing
        for folder in [path.parent, *path.parent.parents]:
            if folder == cfg.home.parent:
                break
            os.chmod(folder, folder.stat().st_mode | 0o111)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ServiceError(f"{path} exists and is not a socket")
        path.unlink()
    server = _Server(path, cfg, store_for(cfg, os.getuid()))  # the audit key is loaded here ...
    from kcure.access.sandbox import scrub_environment

    scrub_environment()  # ... and no secret stays in the environment of the process that runs queries
    os.chmod(path, 0o666)
    if ready is not None:
        ready()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        path.unlink(missing_ok=True)


def request(path: Path, command: str, args: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Send one request to the service; ServiceError carries its refusal or why it could not be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(path))
            s.sendall((json.dumps({"command": command, "args": args}) + "\n").encode())
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                reply += chunk
    except OSError as e:
        raise ServiceError(f"the workspace service at {path} is not reachable ({e.strerror or e})") from None
    try:
        out = dict(json.loads(reply))
    except json.JSONDecodeError:
        raise ServiceError("the workspace service gave no answer") from None
    if not out.get("ok"):
        raise ServiceError(str(out.get("message", "refused")))
    return out
