"""The analyst's workspace through the real service: the custodian provisions a project and runs
`kcure workspace serve`; the analyst, the reviewers and an outsider are real OS accounts (forked
children with their own uid and groups), so every rule is decided on what the kernel says.

Covers: the README's walk-through as written; an unlisted user refused and unable to read the files;
every sandbox escape refused in project scope; small cells refused, then redacted so that none can be
recovered; per-person and key-holding tables refused; files no audited query wrote refused; the
two-person rule; and the audit log, with tampering found."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.build_fixture import Build, copy_build
from tests.conftest import REPO
from tests.projects.osusers import as_user
from tests.security.attacks import ATTACKS
from tests.security.conftest import readable_as

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "kc20261130010"  # the README's walk-through uses this id
OTHER = "kc20261130011"  # a second project whose files the first one's analyst tries to read
COMMITTEE, OUTPUT_CHECKERS = "users", "staff"  # application review; export review
PI, ANALYST, CHECKERS, OUTSIDER = "games", "news", ("daemon", "bin"), "lp"
ROLES = {"the analyst": (ANALYST, ()), "a member": (CHECKERS[0], (OUTPUT_CHECKERS,)),
         "a second member": (CHECKERS[1], (OUTPUT_CHECKERS,))}  # fmt: skip


@dataclass
class Tre:
    base: Path
    home: Path
    conf: Path
    env: dict[str, str]
    service: subprocess.Popen[bytes]

    def run(self, user: str, *argv: str, groups: tuple[str, ...] = ()) -> tuple[int, str, str]:
        return as_user(user, self.conf, self.env, self.base / "cwd", *argv, groups=groups)

    def custodian(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "kcure.cli", *argv], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"kcure {argv[:3]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def query(self, sql: str, out: str, user: str = ANALYST) -> None:
        code, _, err = self.run(user, "query", "--project", PROJECT, sql, "--out", out)
        assert code == 0, err

    def request(self, name: str, *extra: str) -> tuple[int, str, str, str]:
        code, out, err = self.run(ANALYST, "export", "request", "--project", PROJECT, name, *extra)
        rid = re.search(rf"{PROJECT}-x\d+", out + err)
        assert rid, out + err
        return code, out, err, rid.group(0)

    def events(self) -> list[dict[str, Any]]:
        path = self.home / "projects" / PROJECT / "events.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def outbox(self, rid: str) -> Path:
        return self.home / "projects" / PROJECT / "exports" / rid


def _application(base: Path, project: str) -> Path:
    doc = {
        "project": project, "title": f"survival by site ({project})", "principal_investigator": PI,
        "analysts": [ANALYST], "purpose": "survival after diagnosis, by site",
        "irb": {"number": "T-IRB-10", "approved": "2026-11-01"},
        "pledges": {PI: "2026-11-02", ANALYST: "2026-11-02"}, "release": "latest",
        "cohort": {"sites": ["C00-C97"], "years": [2012, 2020]},
        "tables": {"RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "TCODE"]},
                   "DEATH": {"columns": ["SN_KEY", "DREGDATE"]},
                   "T200": {"columns": ["SN_KEY", "MID", "FOM_TP_CD", "RVD_RPE_TAMT_AMT"]}},
        "date_precision": "month", "date_shift": False, "expires": "2099-12-31",
    }  # fmt: skip
    path = base / f"{project}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    os.chmod(path, 0o644)
    return path


def _conf(base: Path) -> Path:
    conf = base / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    d = pipeline["defaults"]
    d["projects"].update(committee_group=COMMITTEE, reviewers_required=2, export_committee_group=OUTPUT_CHECKERS,
                         export_reviewers_required=2, socket=str(base / "run" / "workspace.sock"))  # fmt: skip
    d["query"].update(timeout_seconds=3)
    d["spark"].update({"driver_memory": "2g", "shuffle_partitions": 2})
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    privacy = yaml.safe_load((conf / "privacy.yaml").read_text(encoding="utf-8"))
    privacy["extracts"].update(max_average_risk=1.0, max_unique_share=1.0)  # 300 patients: the gate is not tested here
    (conf / "privacy.yaml").write_text(yaml.safe_dump(privacy, sort_keys=False), encoding="utf-8")
    return conf


@pytest.fixture(scope="module")
def tre(request: pytest.FixtureRequest) -> Iterator[Tre]:
    if os.geteuid() != 0:
        pytest.skip("acting as other OS accounts needs root")
    from kcure import pipeline
    from kcure.core.config import load_config

    base = Path(tempfile.mkdtemp(prefix="kcure-tre-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "cwd").mkdir()
    os.chmod(base / "cwd", 0o1777)  # where the users' own processes start (and fetch into)
    home, conf = base / "home", _conf(base)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KCURE_", "AIRFLOW"))},
           "KCURE_HOME": str(home), "KCURE_CONF": str(conf)}  # fmt: skip
    cfg = dataclasses.replace(load_config(conf), home=home)
    built: Build = request.getfixturevalue("built")
    copy_build(built.home, "t1", home, "b-tre")
    pipeline.run_plan(cfg, pipeline.plan(cfg, "b-tre", "r1", start="publish", stop="publish"))
    log = (base / "service.log").open("w")
    service = subprocess.Popen([sys.executable, "-m", "kcure.cli", "workspace", "serve"], env=env, cwd=REPO,
                               stdout=log, stderr=log)  # fmt: skip
    t = Tre(base, home, conf, env, service)
    try:
        deadline = time.monotonic() + 60
        while not (base / "run" / "workspace.sock").exists():
            assert service.poll() is None and time.monotonic() < deadline, (base / "service.log").read_text()
            time.sleep(0.2)
        for project in (PROJECT, OTHER):
            code, _, err = t.run(PI, "project", "submit", str(_application(base, project)))
            assert code == 0, err
            for reviewer in CHECKERS:
                code, _, err = t.run(reviewer, "project", "review", project, "--approve", "--note", "ok",
                                     groups=(COMMITTEE,))  # fmt: skip
                assert code == 0, err
            t.custodian("project", "provision", project)
        yield t
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def _walkthrough() -> list[tuple[str, list[str]]]:
    """The README's walk-through: (role, argv) for every kcure command, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough -->", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    steps, role, current = [], "", ""
    for line in [*block.splitlines(), "#"]:
        if line.startswith(("#", "kcure ")) and current:
            steps.append((role, shlex.split(current)[1:]))
            current = ""
        if line.startswith("# as "):
            role = next(r for r in sorted(ROLES, key=len, reverse=True) if line.startswith(f"# as {r}"))
        elif line.startswith("kcure ") or current:
            current += line.removesuffix("\\") + "\n"
    return steps


def test_the_readme_walkthrough_runs_as_written(tre: Tre) -> None:
    steps = _walkthrough()
    assert [argv[:2] for _, argv in steps] == [
        ["query", "--project"], ["export", "request"], ["export", "show"], ["export", "review"],
        ["export", "review"], ["export", "list"], ["export", "fetch"],
    ]  # fmt: skip
    outputs = []
    for role, argv in steps:
        user, groups = ROLES[role]
        code, out, err = tre.run(user, *argv, groups=groups)
        assert code == 0, (role, argv[:3], out, err)
        outputs.append(out)
    assert f"{PROJECT}-x001 passed its checks (counts rounded to 5); awaiting 2 reviews" in outputs[1]
    assert "(1 of 2 approvals): it is pending" in outputs[3]
    assert "(2 of 2): released survival_by_site.csv, survival_by_site.svg" in outputs[4]
    assert re.search(rf"{PROJECT}-x001\s+released\s+passed\s+2/2", outputs[5])
    folder = tre.base / "cwd" / "released"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "survival_by_site.csv", "survival_by_site.svg"]
    assert folder.joinpath("survival_by_site.csv").stat().st_uid == pwd.getpwnam(ANALYST).pw_uid
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["reviewers"] == list(CHECKERS) and manifest["requested_by"] == ANALYST
    released = tre.home / "projects" / PROJECT / "released" / f"{PROJECT}-x001"
    for name, sha in manifest["files"].items():
        assert hashlib.sha256((released / name).read_bytes()).hexdigest() == sha
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(folder / "survival_by_site.csv").to_pylist()
    assert table and all(r["at_risk"] >= 5 and (r["events"] == 0 or r["events"] >= 5) for r in table)
    assert "<polyline" in (folder / "survival_by_site.svg").read_text()


def test_an_unlisted_user_is_refused_and_cannot_read_the_files(tre: Tre) -> None:
    code, out, err = tre.run(OUTSIDER, "query", "--project", PROJECT, "select count(*) from RGST")
    assert code == 1 and f"no project '{PROJECT}' that lp may query" in err and "count" not in out
    for argv in (["export", "list", "--project", PROJECT], ["export", "fetch", f"{PROJECT}-x001"],
                 ["export", "request", "--project", PROJECT, "survival_by_site.csv"]):  # fmt: skip
        code, _, err = tre.run(OUTSIDER, *argv)
        assert code == 1 and "lp may" in err, (argv, err)
    # the analyst of one project cannot query another
    code, _, err = tre.run(ANALYST, "query", "--project", "kc20261130099", "select 1")
    assert code == 1 and "that news may query" in err
    files = [p for p in (tre.home / "projects").rglob("*") if p.is_file()]
    files += [p for p in (tre.home / "audit").rglob("*") if p.is_file()] + [tre.home / "keys" / "audit.key"]
    assert any(p.name == "events.jsonl" for p in files) and any("/extract/" in str(p) for p in files)
    for user, groups in ((OUTSIDER, []), (ANALYST, []), (PI, []), (CHECKERS[0], [OUTPUT_CHECKERS, COMMITTEE])):
        assert readable_as(user, files, groups) == set(), user


@pytest.mark.parametrize(("attack", "rule"), ATTACKS)
def test_every_sandbox_escape_is_refused_in_project_scope(tre: Tre, attack: str, rule: str) -> None:
    sql = attack.format(home=tre.home, secrets=tre.home / "keys" / "audit.key")
    code, out, err = tre.run(ANALYST, "query", "--project", PROJECT, sql)
    assert code == 1 and rule in err and len(err.strip().splitlines()) == 1 and "Traceback" not in out + err, err
    assert not (tre.home / "out.csv").exists() and not (tre.home / "x.db").exists()


@pytest.mark.parametrize(
    "target",
    [f"projects/{OTHER}/workspace/extract/RGST/*.parquet", f"projects/{PROJECT}/events.jsonl",
     f"audit/heads/{PROJECT}.json", f"projects/{PROJECT}/exports/*/*", "keys/projects/*.key"],
)  # fmt: skip
def test_the_project_sandbox_reads_only_its_own_extract(tre: Tre, target: str) -> None:
    before = len(tre.events())
    for fn in ("read_parquet", "read_text", "read_csv"):
        code, _, err = tre.run(ANALYST, "query", "--project", PROJECT, f"select * from {fn}('{tre.home}/{target}')")
        assert code == 1 and "Permission Error" in err, (fn, err)
    refused = [e for e in tre.events()[before:] if e["action"] == "query_refused" and target in e["sql"]]
    assert len(refused) == 3 and all(e["by"] == ANALYST for e in refused)


SITE_BY_SEX = """SELECT coalesce(substr(TCODE, 1, 3), 'unknown') AS site, SEX AS sex, count(DISTINCT SN_KEY) AS n
FROM RGST GROUP BY CUBE (site, sex) ORDER BY site, sex"""


def _subtraction_attack(cells: dict[tuple[str, str], float | None], truth: dict[tuple[str, str], float]) -> set[Any]:
    """Solve every published sum (a margin is the sum of its row or column) that has one unknown, with
    the true values of every published cell, until nothing more follows: what an attacker recovers."""
    known = {k: truth[k] for k, v in cells.items() if v is not None}
    sites = {s for s, _ in cells if s is not None}
    sexes = {x for _, x in cells if x is not None}
    sums = [((s, None), [(s, x) for x in sexes if (s, x) in cells]) for s in sites]
    sums += [((None, x), [(s, x) for s in sites if (s, x) in cells]) for x in sexes]
    sums += [((None, None), [(s, None) for s in sites]), ((None, None), [(None, x) for x in sexes])]
    recovered: set[Any] = set()
    changed = True
    while changed:
        changed = False
        for total, parts in sums:
            terms = [total, *parts]
            unknown = [t for t in terms if t in cells and t not in known]
            if len(unknown) == 1:
                u = unknown[0]
                rest = sum(known[p] for p in parts if p != u and p in known)
                known[u] = known[total] - rest if u != total else rest
                recovered.add(u)
                changed = True
    return recovered


def test_small_cells_are_refused_then_redacted_beyond_recovery(tre: Tre) -> None:
    import pyarrow.csv as pcsv

    tre.query(SITE_BY_SEX, "site_by_sex.csv")
    code, out, err, rid = tre.request("site_by_sex.csv", "--counts", "n")
    assert code == 1 and "refused by the automatic checks: small_cells" in err and "--redact" in err, err
    checks = json.loads((tre.outbox(rid) / "checks.json").read_text())
    small = next(r for r in checks["rules"] if r["name"] == "small_cells")
    assert small["cells"] and all(0 < c["value"] < 5 for c in small["cells"])
    code, _, err = tre.run(CHECKERS[0], "export", "review", rid, "--approve", "--note", "x", groups=(OUTPUT_CHECKERS,))
    assert code == 1 and "its automatic checks refused it" in err

    code, out, err, rid = tre.request("site_by_sex.csv", "--counts", "n", "--redact")
    assert code == 0 and f"{rid} redacted (counts rounded to 5); awaiting 2 reviews" in out, err
    original = pcsv.read_csv(tre.outbox(rid) / "site_by_sex.csv", convert_options=pcsv.ConvertOptions(
        column_types={"sex": "string"}, strings_can_be_null=True)).to_pylist()  # fmt: skip
    redacted = pcsv.read_csv(tre.outbox(rid) / "checked-site_by_sex.csv", convert_options=pcsv.ConvertOptions(
        column_types={"sex": "string"}, strings_can_be_null=True)).to_pylist()  # fmt: skip
    truth = {(r["site"], r["sex"]): float(r["n"]) for r in original}
    cells = {(r["site"], r["sex"]): r["n"] for r in redacted}
    assert set(cells) == set(truth)
    masked = {k for k, v in cells.items() if v is None}
    small_cells = {k for k, v in truth.items() if 0 < v < 5}
    assert small_cells and small_cells <= masked
    assert _subtraction_attack(cells, truth) & masked == set()
    assert all(v % 5 == 0 for v in cells.values() if v is not None)  # rounded to 5


def test_a_per_person_table_is_refused_even_with_redact(tre: Tre) -> None:
    tre.query("SELECT DBYEAR, AGE, SEX, TCODE, count(*) AS n FROM RGST GROUP BY SN_KEY, DBYEAR, AGE, SEX, TCODE",
              "per_person.csv")  # fmt: skip
    code, _, err, _ = tre.request("per_person.csv", "--redact")
    assert code == 1 and "row-level data: most of its" in err and "describe one person each" in err, err
    tre.query("SELECT DBYEAR, AGE, SEX FROM RGST", "rows.parquet")
    code, _, err, _ = tre.request("rows.parquet", "--redact")
    assert code == 1 and "row-level data: the query does not aggregate" in err


@pytest.mark.parametrize(
    ("sql", "found"),
    [
        ("SELECT SN_KEY, count(*) AS claims FROM T200 GROUP BY SN_KEY", "columns named as keys: SN_KEY"),
        ("SELECT SEX AS sex, string_agg(SN_KEY, ';') AS who, count(*) AS n FROM RGST GROUP BY SEX",
         "values with a run of 16+ hex characters"),
        ("SELECT left(MID, 20) AS claim, count(DISTINCT SN_KEY) AS n FROM T200 GROUP BY 1",
         "values with a run of 16+ hex characters"),
    ],
)  # fmt: skip
def test_a_file_holding_keys_is_refused(tre: Tre, sql: str, found: str) -> None:
    name = f"keys{abs(hash(sql)) % 10_000}.csv"
    tre.query(sql, name)
    code, _, err, rid = tre.request(name, "--redact")
    assert code == 1 and found in err, err
    checks = (tre.outbox(rid) / "checks.json").read_text()
    for v in re.findall(r"[0-9a-f]{64}", (tre.outbox(rid) / name).read_text()):
        assert v not in checks  # the report names the cells, never the keys


def test_only_a_file_an_audited_query_wrote_is_accepted(tre: Tre) -> None:
    tre.query("SELECT SEX AS sex, count(DISTINCT SN_KEY) AS n FROM RGST GROUP BY 1", "by_sex.csv")
    area = tre.home / "projects" / PROJECT / "workspace" / "users" / ANALYST
    (area / "by_sex.csv").write_text("sex,n\n1,100\n2,100\n")  # someone else's bytes under that name
    code, _, err = tre.run(ANALYST, "export", "request", "--project", PROJECT, "by_sex.csv")
    assert code == 1 and "is not a file an audited query of this project wrote" in err
    for name, why in (("chart.png", "pictures leave only as plots"), ("../../events.jsonl", "not a result name"),
                      ("never_written.csv", "is not among news's results")):  # fmt: skip
        code, _, err = tre.run(ANALYST, "export", "request", "--project", PROJECT, name)
        assert code == 1 and why in err, (name, err)


def test_two_reviewers_neither_the_requester_release_a_request(tre: Tre) -> None:
    tre.query("SELECT DBYEAR AS year, count(DISTINCT SN_KEY) AS n, sum(RVD_RPE_TAMT_AMT) AS amount "
              "FROM RGST JOIN T200 USING (SN_KEY) GROUP BY 1 ORDER BY 1", "by_year.csv")  # fmt: skip
    code, out, err, rid = tre.request("by_year.csv", "--redact")
    assert code == 0, err
    review = ("export", "review", rid, "--approve", "--note", "fine")
    code, _, err = tre.run(ANALYST, *review, groups=(OUTPUT_CHECKERS,))
    assert code == 1 and f"news requested {rid}: the requester cannot review their own request" in err
    code, _, err = tre.run(PI, *review, groups=(OUTPUT_CHECKERS,))
    assert code == 1 and f"games is on project {PROJECT}: they cannot review its exports" in err
    code, _, err = tre.run(OUTSIDER, *review)
    assert code == 1 and "lp is not in the export committee's group staff" in err
    code, out, _ = tre.run(CHECKERS[0], *review, groups=(OUTPUT_CHECKERS,))
    assert code == 0 and "(1 of 2 approvals): it is pending" in out
    code, _, err = tre.run(CHECKERS[0], *review, groups=(OUTPUT_CHECKERS,))
    assert code == 1 and f"daemon has already reviewed {rid}" in err
    assert not (tre.home / "projects" / PROJECT / "released" / rid).exists()  # one reviewer is not enough
    code, _, err = tre.run(ANALYST, "export", "fetch", rid, "--to", "early")
    assert code == 1 and "is pending: only a released export is fetched" in err
    code, out, _ = tre.run(CHECKERS[1], *review, groups=(OUTPUT_CHECKERS,))
    assert code == 0 and "released by_year.csv" in out
    released = tre.home / "projects" / PROJECT / "released" / rid / "by_year.csv"
    assert released.read_bytes() == (tre.outbox(rid) / "checked-by_year.csv").read_bytes()
    code, _, err = tre.run(ANALYST, "export", "fetch", rid, "--to", f"fetched-{rid}")
    assert code == 0 and (tre.base / "cwd" / f"fetched-{rid}" / "by_year.csv").read_bytes() == released.read_bytes()
    code, _, err = tre.run(OUTSIDER, "export", "fetch", rid, "--to", "mine")
    assert code == 1 and "that lp may fetch" in err and not (tre.base / "cwd" / "mine").exists()
    late = ("export", "review", rid, "--reject", "--note", "late")
    code, _, err = tre.run(CHECKERS[1], *late, groups=(OUTPUT_CHECKERS,))
    assert code == 1 and "it is released" in err


def test_the_audit_log_holds_every_action_and_a_tampered_entry_is_found(tre: Tre) -> None:
    events = tre.events()
    actions = {e["action"] for e in events}
    assert {"submitted", "approved", "provisioned", "query", "query_refused", "export_requested",
            "export_approved", "export_released", "export_fetched"} <= actions  # fmt: skip
    q = next(e for e in events if e["action"] == "query" and e.get("out") == "site_by_sex.csv")
    assert q["by"] == ANALYST and q["uid"] == pwd.getpwnam(ANALYST).pw_uid and q["sql"] == SITE_BY_SEX
    assert q["release"] == "r1" and q["provision"] == 1 and len(q["sha256"]) == 64 and q["rows"] > 0
    ok = tre.custodian("audit", "verify")
    assert f"{PROJECT}: {len(events)} entries, chain and head verified" in ok.stdout
    assert "2 project(s) verified, 0 broken" in ok.stdout
    code, _, err = tre.run(ANALYST, "audit", "verify", "--project", PROJECT)
    assert code == 1 and "custodian's account only" in err

    log = tre.home / "projects" / PROJECT / "events.jsonl"
    kept = log.read_bytes()
    try:
        lines = log.read_text().splitlines()
        n = next(i for i, e in enumerate(events) if e["action"] == "query_refused")
        lines[n] = lines[n].replace('"query_refused"', '"query"')  # hide an attack
        log.write_text("\n".join(lines) + "\n")
        bad = tre.custodian("audit", "verify", "--project", PROJECT, check=False)
        assert bad.returncode == 1 and f"{PROJECT}: entry {n + 1} is broken: its MAC does not match" in bad.stdout
        code, _, err = tre.run(ANALYST, "query", "--project", PROJECT, "select 1")
        assert code == 1 and f"entry {n + 1}: the audit chain is broken" in err  # and nothing runs on it
    finally:
        log.write_bytes(kept)
    assert tre.custodian("audit", "verify", "--project", PROJECT).returncode == 0
