"""kcure_ingest runs through Airflow itself (dag.test with a SQLite metadata database)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.airflow, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def airflow_db() -> None:
    from airflow.utils.db import initdb

    assert Path(os.environ["AIRFLOW_HOME"]).is_relative_to(Path(os.environ["KCURE_HOME"]))
    initdb()


def _run(conf: dict):  # type: ignore[no-untyped-def,type-arg]
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=str(REPO / "dags"))
    dr = bag.get_dag("kcure_ingest").test(run_conf=conf)
    with create_session() as s:
        tis = {
            (ti.task_id, ti.rendered_map_index): (ti.state, ti.try_number) for ti in dr.get_task_instances(session=s)
        }
        events = [
            (ev.asset.name, ev.extra)
            for ev in s.scalars(select(AssetEvent).where(AssetEvent.source_run_id == dr.run_id))
        ]
    return dr.state, tis, events


def test_dag_ingests_feed_years_fails_only_the_bad_one_and_emits_assets(airflow_db, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    from kcure.core.config import load_config
    from kcure.core.staging import Staging

    conf = {"feeds": ["hira_t400", "kostat_death"], "years": [2013, 2014], "landing": str(small_landing)}
    state, tis, events = _run(conf)
    assert state == "failed"  # one feed-year failed, so the run is marked failed for operators
    assert tis[("discover_deliveries", None)][0] == "success"
    assert tis[("ingest_feed_year", "hira_t400/2014")] == ("failed", 1)  # data errors are not retried
    for ok in ("hira_t400/2013", "kostat_death/2013", "kostat_death/2014"):
        assert tis[("ingest_feed_year", ok)][0] == "success", ok
    assert sorted((name, e["year"]) for name, e in events if name != "kcure_staging_updated") == [
        ("kcure_staged_hira_t400", 2013),
        ("kcure_staged_kostat_death", 2013),
        ("kcure_staged_kostat_death", 2014),
    ]
    # once every feed-year settled (one failed), one event tells the build DAG that staging changed
    assert tis[("staging_updated", None)][0] == "success"
    assert tis[("fail_run_if_a_feed_year_failed", None)][0] == "failed"  # and it keeps the run red
    assert [name for name, _ in events].count("kcure_staging_updated") == 1
    cfg = load_config()
    st = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
    assert st.current("hira_t400", 2013) is not None and st.current("hira_t400", 2014) is None

    # a second run finds nothing new: no parsing, no asset events
    state2, tis2, events2 = _run({**conf, "feeds": ["kostat_death"]})
    assert state2 == "success"
    assert events2 == []
    assert tis2[("staging_updated", None)][0] == "skipped"  # nothing new: no build is triggered
    assert tis2[("fail_run_if_a_feed_year_failed", None)][0] == "skipped"
    assert {k for k in tis2 if k[0] == "ingest_feed_year"} == {
        ("ingest_feed_year", "kostat_death/2013"),
        ("ingest_feed_year", "kostat_death/2014"),
    }


def test_params_reject_an_unknown_feed(airflow_db) -> None:  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import ParamValidationError

    dag = DagBag(dag_folder=str(REPO / "dags")).get_dag("kcure_ingest")
    with pytest.raises(ParamValidationError, match="hira_t999"):
        dag.test(run_conf={"feeds": ["hira_t999"]})
