"""kcure_provision_project through Airflow itself (`airflow dags test`, as an operator runs it) and
`kcure project provision` through the CLI give the same extract, row for row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.projects.conftest import ProjectHome, application, approve, read_extract

pytestmark = [pytest.mark.airflow, pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]

PROJECT = "kc20261130107"
TABLES = {
    "RGST": {"columns": ["SN_KEY", "DBYEAR", "SEX", "AGE", "FDX", "TCODE"]},
    "BFC": {"columns": ["SN_KEY", "STD_YYYY", "SIDO", "CTRB_VTILE"]},
    "T200": {"columns": ["SN_KEY", "MID", "RECU_FR_DD", "RVD_RPE_TAMT_AMT"], "years": [2016, 2019]},
    "T300": {"columns": ["MID", "DIV_TY_CD", "DIV_CD", "AMT"], "years": [2016, 2019]},
}


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as out:
        proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, log.read_text()[-6000:]


def test_airflow_and_the_cli_provision_identical_extracts(project_home: ProjectHome, tmp_path: Path) -> None:
    approve(project_home, application(PROJECT, TABLES))
    home = project_home.cfg.home
    env = {
        **os.environ,
        "KCURE_HOME": str(home),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "KCURE_CONF": str(project_home.relaxed.conf_dir),
    }  # fmt: skip  (T200.RECU_FR_DD: admission models)
    for var in ("KCURE_LINKAGE_SECRET", "KCURE_LIBRARY_SECRET"):  # provisioning needs neither
        env.pop(var, None)
    extract = home / "projects" / PROJECT / "workspace" / "extract"

    _run([sys.executable, "-m", "kcure.cli", "project", "provision", PROJECT], env, tmp_path / "cli.log")
    assert "privacy gate passed" in (tmp_path / "cli.log").read_text()
    by_cli = read_extract(extract)

    airflow = str(REPO / "scripts" / "airflow.sh")
    _run([airflow, "db", "migrate"], env, tmp_path / "migrate.log")
    conf = json.dumps({"project": PROJECT})
    _run([airflow, "dags", "test", "kcure_provision_project", "--conf", conf], env, tmp_path / "dag.log")
    by_airflow = read_extract(extract)

    assert set(by_cli) == set(TABLES) == set(by_airflow)
    for name in TABLES:
        assert len(by_cli[name]) > 0, name
        assert by_cli[name].equals(by_airflow[name]), name
    events = project_home.store().events(PROJECT)
    assert [e["action"] for e in events][-2:] == ["provisioned", "provisioned"]
    assert events[-1]["key"] == events[-2]["key"] and events[-1]["release"] == events[-2]["release"]
    manifests = [json.loads((home / "projects" / PROJECT / "provisions" / n / "manifest.json").read_text())
                 for n in ("1", "2")]  # fmt: skip
    assert manifests[0]["tables"] == manifests[1]["tables"]
    # the same figures; the recoding steps differ, as the second run starts from what the first gave
    same = ("passed", "person_level", "one_event", "class_size_distribution", "people_dropped", "cohort")
    privacy = [{k: m["privacy"][k] for k in same} for m in manifests]
    assert privacy[0] == privacy[1] and manifests[1]["privacy"]["never_finer_than_before"]["had_previous"]
