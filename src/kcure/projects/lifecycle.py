"""A research project's life: submitted -> approved -> provisioned -> closed, as an append-only log.

Each project lives in ``<KCURE_HOME>/projects/<id>/``, owner-only (the custodian's account):
``application-v<N>.yaml`` is each submitted version, byte for byte, and ``events.jsonl`` every transition
and every audited action (queries, exports), one JSON object a line, chained and keyed with the
custodian's audit key (:mod:`kcure.projects.audit`): an edited, removed or re-chained entry, or a cut-off
tail, is found on the next read. The state is never stored: it is the replay of the log.

Who acts is a :class:`Caller` the OS vouches for (the process's own credentials, or the peer credentials
of a workspace-service client), never a name typed as an argument. The rules:

* an application is submitted by the custodian or by its principal investigator; submitting it again
  is an amendment, a new version that must be reviewed again (earlier approvals do not carry over);
* reviewers are members of the committee's OS group, never the principal investigator or an analyst of
  that project, and each reviews a version once; ``reviewers_required`` distinct approvals approve it,
  one rejection rejects it (with its note) until an amendment;
* a closed project stays closed: nothing can be submitted, reviewed or provisioned under its id again.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kcure.projects.application import PROJECT_ID, Application
from kcure.projects.audit import GENESIS, Audit

EVENTS = "events.jsonl"
CLOSE_REASONS = ("finished", "withdrawn", "expired")


class ProjectRefused(Exception):
    """A transition the rules do not allow; the message names the rule (one line, no data values)."""


@dataclass(frozen=True)
class Caller:
    """Who is acting, as the OS reports it: user name, uid and every group id of the process."""

    user: str
    uid: int
    groups: frozenset[int]

    @classmethod
    def of_uid(cls, uid: int, groups: frozenset[int]) -> Caller:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = f"uid{uid}"
        return cls(name, uid, groups)

    @classmethod
    def this_process(cls) -> Caller:
        return cls.of_uid(os.getuid(), frozenset({os.getgid(), *os.getgroups()}))


@dataclass(frozen=True)
class Rules:
    custodian_uid: int  # the account that owns KCURE_HOME and runs the workspace service
    committee_gid: int | None  # None: the committee's group does not exist here, so nobody may review
    committee_group: str
    reviewers_required: int


@dataclass
class State:
    project: str
    status: str = "none"  # none, submitted, approved, rejected, provisioned, closed
    version: int = 0
    sha256: str = ""
    title: str = ""
    people: tuple[str, ...] = ()  # the current version's principal investigator and analysts
    approvals: list[str] = field(default_factory=list)  # of the current version
    reviewed_by: list[str] = field(default_factory=list)  # of the current version, either way
    exceptions: list[dict[str, Any]] = field(default_factory=list)  # of the current version: by, note
    note: str = ""  # the rejection's, or the closing reason
    events: list[dict[str, Any]] = field(default_factory=list)


def replay(project: str, events: list[dict[str, Any]], required: int) -> State:
    """The state the events lead to (pure: the rules were applied when each event was written)."""
    s = State(project, events=events)
    for e in events:
        action = e["action"]
        if action == "submitted":
            s.status, s.version, s.sha256 = "submitted", int(e["version"]), str(e["sha256"])
            s.title, s.people = str(e.get("title", "")), tuple(e.get("people", ()))
            s.approvals, s.reviewed_by, s.exceptions, s.note = [], [], [], ""
        elif action in ("approved", "rejected"):
            s.reviewed_by.append(e["by"])
            if action == "rejected":
                s.status, s.note = "rejected", str(e.get("note", ""))
            else:
                s.approvals.append(e["by"])
                if len(s.approvals) >= required:
                    s.status = "approved"
        elif action == "exception":
            s.exceptions.append({"by": e["by"], "note": e.get("note", "")})
        elif action == "provisioned":  # an exception covers one provisioning: the next needs its own
            s.status, s.exceptions = "provisioned", []
        elif action == "closed":
            s.status, s.note = "closed", str(e.get("note", ""))
    return s


class ProjectStore:
    """The projects under one KCURE_HOME; every write appends to a log under an exclusive lock."""

    def __init__(self, root: Path, rules: Rules, audit: Audit) -> None:
        self.root = root
        self.rules = rules
        self.audit = audit

    def folder(self, project: str) -> Path:
        if not PROJECT_ID.fullmatch(project or ""):
            raise ProjectRefused(f"{project[:40]!r} is not a project id (kcYYYYMMDDNNN)")
        return self.root / project

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if PROJECT_ID.fullmatch(p.name) and (p / EVENTS).exists())

    def events(self, project: str) -> list[dict[str, Any]]:
        """The project's log, its keyed chain and head verified: a break names the entry."""
        verdict, events = self.audit.verify(project, self.folder(project) / EVENTS)
        if not verdict.ok:
            raise ProjectRefused(f"{project}/{EVENTS} entry {verdict.broken_at}: the audit chain is broken "
                                 f"({verdict.problem}); nothing was changed")  # fmt: skip
        return events

    def state(self, project: str) -> State:
        return self._replay(project, self.events(project))

    def _replay(self, project: str, events: list[dict[str, Any]]) -> State:
        return replay(project, events, self.rules.reviewers_required)

    @contextmanager
    def locked(self, project: str) -> Iterator[State]:
        """The project's state under its lock: decide, then :meth:`append`, with nobody in between."""
        with self._locked(project) as s:
            yield s

    def append(self, state: State, caller: Caller, action: str, **detail: Any) -> dict[str, Any]:
        """An entry, inside :meth:`locked`."""
        return self._append(state, caller, action, **detail)

    @contextmanager
    def _locked(self, project: str) -> Iterator[State]:
        folder = self.folder(project)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self.state(project)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _append(self, state: State, caller: Caller, action: str, **detail: Any) -> dict[str, Any]:
        prev = state.events[-1]["hash"] if state.events else GENESIS
        body = {
            "seq": len(state.events) + 1,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": caller.user,
            "uid": caller.uid,
            "action": action,
            "version": detail.pop("version", state.version),
            **detail,
            "prev": prev,
        }
        event = self.audit.seal(prev, body)
        path = self.folder(state.project) / EVENTS
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(event, ensure_ascii=True) + "\n").encode())  # one line, whatever the text
            os.fsync(fd)
        finally:
            os.close(fd)
        self.audit.set_head(state.project, body["seq"], event["hash"])
        state.events.append(event)
        return event

    # --- transitions ---------------------------------------------------------------------------------

    def submit(self, app: Application, data: bytes, caller: Caller) -> State:
        if caller.uid != self.rules.custodian_uid and caller.user != app.principal_investigator:
            raise ProjectRefused("an application is submitted by its principal investigator or the custodian")
        with self._locked(app.project) as s:
            if s.status == "closed":
                raise ProjectRefused(f"project {app.project} is closed: its id cannot be used again")
            if s.sha256 == app.sha256:
                raise ProjectRefused(f"version {s.version} of {app.project} is this same file: nothing to amend")
            version = s.version + 1
            path = self.folder(app.project) / f"application-v{version}.yaml"
            path.write_bytes(data)
            os.chmod(path, 0o600)
            self._append(s, caller, "submitted", version=version, sha256=app.sha256, title=app.title,
                         people=list(app.people), amends=s.version or None)  # fmt: skip
            return self._replay(app.project, s.events)

    def _committee_only(self, caller: Caller, note: str, missing: str) -> None:
        r = self.rules
        if r.committee_gid is None or r.committee_gid not in caller.groups:
            raise ProjectRefused(f"{caller.user} is not in the review committee's group {r.committee_group}")
        if not note.strip():
            raise ProjectRefused(missing)

    def review(self, project: str, caller: Caller, *, approve: bool, note: str) -> State:
        self._committee_only(caller, note, "a review needs a note saying why")
        with self._locked(project) as s:
            if s.status != "submitted":
                raise ProjectRefused(f"project {project} is {s.status}: only a submitted application is reviewed")
            if caller.user in s.people:
                raise ProjectRefused(f"{caller.user} is on project {project}: they cannot review it")
            if caller.user in s.reviewed_by:
                raise ProjectRefused(f"{caller.user} has already reviewed version {s.version} of {project}")
            self._append(s, caller, "approved" if approve else "rejected", note=note.strip()[:2000])
            return self._replay(project, s.events)

    def exception(self, project: str, caller: Caller, note: str) -> State:
        """A committee member accepts the current version's extract although its privacy gate fails."""
        self._committee_only(caller, note, "an exception needs its reason")
        with self._locked(project) as s:
            if s.status not in ("approved", "provisioned"):
                raise ProjectRefused(f"project {project} is {s.status}: an exception is recorded for an approved one")
            if caller.user in s.people:
                raise ProjectRefused(f"{caller.user} is on project {project}: they cannot grant it an exception")
            if caller.user in {e["by"] for e in s.exceptions}:
                raise ProjectRefused(f"{caller.user} has already recorded an exception for v{s.version} of {project}")
            self._append(s, caller, "exception", note=note.strip()[:2000])
            return self._replay(project, s.events)

    def provisioned(self, project: str, caller: Caller, **detail: Any) -> State:
        with self._locked(project) as s:
            if s.status not in ("approved", "provisioned"):
                raise ProjectRefused(f"project {project} is {s.status}: it cannot be provisioned")
            self._append(s, caller, "provisioned", **detail)
            return self._replay(project, s.events)

    def note(self, project: str, caller: Caller, action: str, **detail: Any) -> State:
        """An event that changes no state (a refused provisioning, what closing destroyed)."""
        with self._locked(project) as s:
            self._append(s, caller, action, **detail)
            return self._replay(project, s.events)

    def close(self, project: str, caller: Caller, reason: str) -> State:
        if caller.uid != self.rules.custodian_uid:
            raise ProjectRefused("a project is closed by the custodian (or by its expiry)")
        if reason not in CLOSE_REASONS:
            raise ProjectRefused(f"a project closes as {', '.join(CLOSE_REASONS)}")
        with self._locked(project) as s:
            if s.status in ("none", "closed"):
                raise ProjectRefused(f"project {project} is {'unknown' if s.status == 'none' else 'closed already'}")
            self._append(s, caller, "closed", note=reason)
            return self._replay(project, s.events)

    def application_file(self, project: str, version: int) -> Path:
        return self.folder(project) / f"application-v{version}.yaml"
