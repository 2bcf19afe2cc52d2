"""Projects through the real workspace service: the custodian runs `kcure workspace serve`, and other OS
accounts run `kcure project ...` as themselves (a forked process whose uid and groups are really theirs),
so the service knows each caller from the kernel only. Root is needed to become those accounts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.projects.osusers import as_user as run_as
from tests.security.conftest import readable_as

pytestmark = [pytest.mark.integration]

COMMITTEE = "users"  # a group every machine has; the test gives it to the reviewers' processes only
PI, ANALYST, REVIEWERS, OUTSIDER = "games", "news", ("daemon", "bin"), "lp"
PROJECT = "kc20261130007"


@dataclass
class Workspace:
    base: Path
    home: Path
    conf: Path
    socket: Path
    env: dict[str, str]
    application: Path


def _application(base: Path) -> Path:
    doc = yaml.safe_load((REPO / "conf" / "applications" / "kc20261130001.yaml").read_text(encoding="utf-8"))
    doc.update(project=PROJECT, principal_investigator=PI, analysts=[ANALYST],
               pledges={PI: "2026-11-01", ANALYST: "2026-11-02"}, expires="2099-12-31")  # fmt: skip
    path = base / "application.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    os.chmod(path, 0o644)
    return path


@pytest.fixture(scope="module")
def workspace() -> Iterator[Workspace]:
    if os.geteuid() != 0:
        pytest.skip("acting as other OS accounts needs root")
    base = Path(tempfile.mkdtemp(prefix="kcure-workspace-", dir="/tmp"))
    os.chmod(base, 0o755)
    home, conf, sock = base / "home", base / "conf", base / "run" / "workspace.sock"
    shutil.copytree(REPO / "conf", conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline["defaults"]["projects"].update(committee_group=COMMITTEE, reviewers_required=2, socket=str(sock))
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KCURE_", "AIRFLOW"))},
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
    }
    log = (base / "service.log").open("w")
    service = subprocess.Popen(
        [sys.executable, "-m", "kcure.cli", "workspace", "serve"], env=env, cwd=REPO, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert service.poll() is None and time.monotonic() < deadline, (base / "service.log").read_text()
            time.sleep(0.2)
        yield Workspace(base, home, conf, sock, env, _application(base))
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def as_user(ws: Workspace, user: str, *argv: str, committee: bool = False) -> tuple[int, str, str]:
    """``kcure <argv>`` as ``user`` (in the committee's group only if ``committee``)."""
    return run_as(user, ws.conf, ws.env, ws.base, *argv, groups=(COMMITTEE,) if committee else ())


def _custodian(ws: Workspace, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kcure.cli", *argv], env=ws.env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_an_application_is_approved_by_two_committee_members_the_os_names(workspace: Workspace) -> None:
    ws = workspace
    code, out, err = as_user(ws, PI, "project", "submit", str(ws.application))
    assert code == 0 and f"{PROJECT} submitted: version 1, awaiting 2 reviews" in out, err

    refusals = [
        (OUTSIDER, True, "lp is not in the review committee's group users"),  # the group, from the kernel
        (OUTSIDER, False, "lp is not in the review committee's group users"),
        (ANALYST, True, f"news is on project {PROJECT}: they cannot review it"),
    ]
    for user, in_group, message in refusals:
        code, out, err = as_user(ws, user, "project", "review", PROJECT, "--approve", "--note", "ok",
                                 committee=in_group and user != OUTSIDER)  # fmt: skip
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, (user, out, err)

    code, out, _ = as_user(ws, REVIEWERS[0], "project", "review", PROJECT, "--approve", "--note", "need shown",
                           committee=True)  # fmt: skip
    assert code == 0 and "(1 of 2 approvals): it is submitted" in out
    code, _, err = as_user(ws, REVIEWERS[0], "project", "review", PROJECT, "--approve", "--note", "again",
                           committee=True)  # fmt: skip
    assert code == 1 and "daemon has already reviewed version 1" in err
    code, out, _ = as_user(ws, REVIEWERS[1], "project", "review", PROJECT, "--approve", "--note", "adequate",
                           committee=True)  # fmt: skip
    assert code == 0 and "(2 of 2 approvals): it is approved" in out

    shown = _custodian(ws, "project", "show", PROJECT, "--json")
    events = json.loads(shown.stdout)["events"]
    assert [(e["by"], e["action"]) for e in events] == [
        (PI, "submitted"), (REVIEWERS[0], "approved"), (REVIEWERS[1], "approved"),
    ]  # fmt: skip
    assert [e["uid"] for e in events] == [pwd.getpwnam(u).pw_uid for u in (PI, *REVIEWERS)]


def test_who_sees_what_and_no_account_reads_the_store_directly(workspace: Workspace) -> None:
    ws = workspace
    if as_user(ws, PI, "project", "list")[1].count(PROJECT) == 0:
        as_user(ws, PI, "project", "submit", str(ws.application))
    assert PROJECT in as_user(ws, ANALYST, "project", "list")[1]  # their own project
    assert PROJECT in as_user(ws, REVIEWERS[0], "project", "list", committee=True)[1]  # the committee
    code, out, err = as_user(ws, OUTSIDER, "project", "list")
    assert code == 0 and PROJECT not in out
    code, out, err = as_user(ws, OUTSIDER, "project", "show", PROJECT)
    assert code == 1 and "that lp may see" in err and PROJECT not in out

    # identity is the kernel's: nothing in a request can name someone else
    from kcure.projects.workspace import ServiceError, request

    pid = os.fork()
    if pid == 0:
        pw = pwd.getpwnam(OUTSIDER)
        os.setgroups([pw.pw_gid])
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
        try:
            request(ws.socket, "review", {"project": PROJECT, "approve": True, "note": "x", "by": "daemon",
                                          "user": "daemon", "uid": 1})  # fmt: skip
            os._exit(3)
        except ServiceError as e:
            os._exit(0 if "lp is not in the review committee" in str(e) else 4)
    assert os.waitpid(pid, 0)[1] == 0

    files = [p for p in ws.home.rglob("*")]
    assert files, "the store holds the project"
    for user in (PI, ANALYST, OUTSIDER, *REVIEWERS):
        assert readable_as(user, files, [COMMITTEE]) == set(), user


def test_the_custodian_closes_and_the_id_is_never_used_again(workspace: Workspace) -> None:
    ws = workspace
    if as_user(ws, PI, "project", "list")[1].count(PROJECT) == 0:
        as_user(ws, PI, "project", "submit", str(ws.application))
    code, _, err = as_user(ws, PI, "project", "close", PROJECT, "--reason", "withdrawn")
    assert code == 1 and "closed by the custodian" in err
    closed = _custodian(ws, "project", "close", PROJECT, "--reason", "withdrawn")
    assert closed.returncode == 0 and f"{PROJECT} closed (withdrawn)" in closed.stdout, closed.stderr
    doc = yaml.safe_load(ws.application.read_text(encoding="utf-8"))
    doc["title"] = "the same id, once more"
    again = ws.base / "again.yaml"
    again.write_text(yaml.safe_dump(doc), encoding="utf-8")
    os.chmod(again, 0o644)
    code, _, err = as_user(ws, PI, "project", "submit", str(again))
    assert code == 1 and "is closed: its id cannot be used again" in err
