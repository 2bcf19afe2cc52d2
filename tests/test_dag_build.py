"""kcure_build_library through Airflow itself (dag.test, SQLite): a failing task alerts the operator
and publishes nothing. The successful path runs under `airflow standalone` in tests/test_browser.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]


def test_a_build_without_secrets_fails_once_alerts_the_operator_and_publishes_nothing(  # type: ignore[no-untyped-def]
    staged_local, monkeypatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.db import initdb
    from airflow.utils.session import create_session

    from kcure.core import catalog

    local_cfg, _ = staged_local
    assert Path(os.environ["AIRFLOW_HOME"]).is_relative_to(Path(os.environ["KCURE_HOME"]))
    initdb()
    for var in (
        "KCURE_LINKAGE_SECRET",
        "KCURE_LIBRARY_SECRET",
        "KCURE_LINKAGE_SECRET_FILE",
        "KCURE_LIBRARY_SECRET_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KCURE_HOME", str(local_cfg.home))
    alerts = local_cfg.home / "reports" / "alerts.jsonl"
    before = alerts.read_text().splitlines() if alerts.exists() else []

    dr = DagBag(dag_folder=str(REPO / "dags")).get_dag("kcure_build_library").test(run_conf={"build": "nosecret"})
    with create_session() as s:
        tis = {ti.task_id: (ti.state, ti.try_number) for ti in dr.get_task_instances(session=s)}
    assert dr.state == "failed"
    assert tis["plan"][0] == "success"
    assert tis["pseudonymize"] == ("failed", 1)  # a missing secret is not retried
    assert {tis[t][0] for t in ("link", "protect", "check", "publish", "report")} == {"upstream_failed"}

    new = [json.loads(line) for line in alerts.read_text().splitlines()[len(before) :]]
    assert [(a["dag_id"], a["task_id"]) for a in new] == [("kcure_build_library", "pseudonymize")]
    assert "linkage secret is missing" in new[0]["error"] and "KCURE_LINKAGE_SECRET" in new[0]["what_to_do"]
    assert not [r for r in catalog.list_releases(catalog.open_catalog(local_cfg)) if r.build == "nosecret"]
