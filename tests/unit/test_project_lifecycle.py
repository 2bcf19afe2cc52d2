"""The project life cycle's rules, on a real store in a temporary folder, with callers as the OS would
report them: who may submit, review and close, what an amendment resets, and a log that cannot be
edited unnoticed."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcure.projects.application import parse_application
from kcure.projects.audit import Audit, AuditKey
from kcure.projects.lifecycle import Caller, ProjectRefused, ProjectStore, Rules
from tests.unit.test_application import EXAMPLE

COMMITTEE = 4242
CUSTODIAN = Caller("kcure", 1000, frozenset({1000}))
PI = Caller("kcure-pi", 2001, frozenset({2001}))
ANALYST_ON_COMMITTEE = Caller("kcure-analyst", 2002, frozenset({2002, COMMITTEE}))
ALICE = Caller("alice", 3001, frozenset({3001, COMMITTEE}))
BOB = Caller("bob", 3002, frozenset({3002, COMMITTEE}))
CAROL = Caller("carol", 3003, frozenset({3003, COMMITTEE}))
EVE = Caller("eve", 3004, frozenset({3004}))  # not on the committee


def audit(tmp_path: Path) -> Audit:
    return Audit(AuditKey("audit", b"a throwaway audit key for tests!"), tmp_path / "heads")


def _store(tmp_path: Path) -> ProjectStore:
    return ProjectStore(tmp_path / "projects", Rules(CUSTODIAN.uid, COMMITTEE, "kcure-committee", 2), audit(tmp_path))


def _app(cfg: Any, **changes: Any) -> tuple[Any, bytes]:
    doc = {**yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), **changes}
    data = yaml.safe_dump(doc).encode()
    users = {"kcure-pi", "kcure-analyst"}
    return parse_application(data, "a.yaml", cfg.library, cfg.privacy.window, today=date(2026, 11, 30),
                             user_exists=users.__contains__), data  # fmt: skip


def _refused(match: str, fn: Any, *args: Any, **kw: Any) -> None:
    with pytest.raises(ProjectRefused, match=match):
        fn(*args, **kw)


def test_two_distinct_committee_members_approve_and_nobody_else_counts(cfg: Any, tmp_path: Path) -> None:
    store = _store(tmp_path)
    app, data = _app(cfg)
    _refused("submitted by its principal investigator or the custodian", store.submit, app, data, ALICE)
    s = store.submit(app, data, PI)
    assert (s.status, s.version) == ("submitted", 1)
    pid = app.project
    _refused("not in the review committee", store.review, pid, EVE, approve=True, note="fine")
    _refused("on project", store.review, pid, ANALYST_ON_COMMITTEE, approve=True, note="fine")
    _refused("needs a note", store.review, pid, ALICE, approve=True, note="  ")
    assert store.review(pid, ALICE, approve=True, note="need shown").status == "submitted"
    _refused("already reviewed version 1", store.review, pid, ALICE, approve=True, note="again")
    s = store.review(pid, BOB, approve=True, note="pseudonymization adequate")
    assert s.status == "approved" and s.approvals == ["alice", "bob"]
    _refused("only a submitted application is reviewed", store.review, pid, CAROL, approve=True, note="late")
    assert [e["action"] for e in store.events(pid)] == ["submitted", "approved", "approved"]
    assert [e["by"] for e in store.events(pid)] == ["kcure-pi", "alice", "bob"]


def test_an_amendment_is_reviewed_again_and_a_rejection_records_why(cfg: Any, tmp_path: Path) -> None:
    store = _store(tmp_path)
    app, data = _app(cfg)
    store.submit(app, data, CUSTODIAN)
    store.review(app.project, ALICE, approve=True, note="ok")
    s = store.review(app.project, BOB, approve=False, note="the purpose does not need DEATH")
    assert (s.status, s.note) == ("rejected", "the purpose does not need DEATH")
    _refused("this same file", store.submit, app, data, PI)
    amended, data2 = _app(cfg, tables={"RGST": {"columns": "all"}})
    s = store.submit(amended, data2, PI)
    assert (s.status, s.version, s.approvals) == ("submitted", 2, [])  # version 1's approval does not carry over
    store.review(app.project, ALICE, approve=True, note="ok")
    assert store.review(app.project, BOB, approve=True, note="ok now").status == "approved"
    assert store.application_file(app.project, 1).read_bytes() == data
    assert store.application_file(app.project, 2).read_bytes() == data2


def test_a_closed_project_stays_closed(cfg: Any, tmp_path: Path) -> None:
    store = _store(tmp_path)
    app, data = _app(cfg)
    store.submit(app, data, PI)
    _refused("closed by the custodian", store.close, app.project, PI, "withdrawn")
    assert store.close(app.project, CUSTODIAN, "withdrawn").status == "closed"
    amended, data2 = _app(cfg, title="a new title")
    _refused("is closed: its id cannot be used again", store.submit, amended, data2, PI)
    _refused("is closed", store.review, app.project, ALICE, approve=True, note="x")
    _refused("closed already", store.close, app.project, CUSTODIAN, "finished")


@pytest.mark.parametrize("tamper", ["edit", "remove"])
def test_an_edited_or_removed_log_entry_breaks_the_chain(cfg: Any, tmp_path: Path, tamper: str) -> None:
    """Edits by hand are found (tests/unit/test_audit.py rewrites the chain as an attacker would)."""
    store = _store(tmp_path)
    app, data = _app(cfg)
    store.submit(app, data, PI)
    store.review(app.project, ALICE, approve=False, note="no")
    store.submit(*_app(cfg, title="v2"), PI)
    log = store.folder(app.project) / "events.jsonl"
    lines = log.read_text().splitlines()
    if tamper == "edit":  # turn the rejection into an approval
        lines[1] = lines[1].replace('"rejected"', '"approved"')
    else:
        del lines[1]
    log.write_text("\n".join(lines) + "\n")
    _refused("entry 2: the audit chain is broken", store.state, app.project)
    _refused("chain is broken", store.review, app.project, CAROL, approve=True, note="x")


def test_expired_projects_are_closed_with_their_keys_destroyed(tmp_path, cfg) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import os
    from datetime import date

    from kcure.projects.lifecycle import Caller, ProjectStore, Rules
    from kcure.projects.provisioning import close_expired, key_store
    from tests.projects.conftest import approved_minimal

    home_cfg = dataclasses.replace(cfg, home=tmp_path)
    store = ProjectStore(tmp_path / "projects", Rules(os.getuid(), 4242, "c", 1), audit(tmp_path))
    me = Caller.this_process()
    for project, expires in (("kc20261130201", "2027-01-31"), ("kc20261130202", "2030-01-31")):
        approved_minimal(cfg, store, project, expires, date(2026, 11, 30))
        key_store(home_cfg).load_or_create(project)
    assert close_expired(home_cfg, store, me, today=date(2027, 2, 1)) == ["kc20261130201"]
    assert store.state("kc20261130201").status == "closed" and store.state("kc20261130201").note == "expired"
    assert store.state("kc20261130202").status == "approved"
    assert key_store(home_cfg).load("kc20261130201") is None and key_store(home_cfg).load("kc20261130202")
    assert close_expired(home_cfg, store, me, today=date(2027, 2, 1)) == []  # closed stays closed
