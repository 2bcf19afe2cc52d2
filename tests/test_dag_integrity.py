"""Every DAG file imports cleanly and every DAG carries what operators rely on.

Stays meaningful as DAGs arrive: it walks whatever is in dags/ and checks each DAG the same way.
"""

from __future__ import annotations

import ast
import itertools
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.airflow
DAG_DIR = REPO / "dags"
DAG_FILES = sorted(p for p in DAG_DIR.glob("*.py") if not p.name.startswith("_"))
EXPECTED_DAGS = {"kcure_ingest", "kcure_build_library", "kcure_provision_project", "kcure_housekeeping"}


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    t0 = time.perf_counter()
    bag = DagBag(dag_folder=str(DAG_DIR))
    bag.parse_seconds = time.perf_counter() - t0
    return bag


def test_dag_files_import_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}


def test_the_pipeline_dags_are_there(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert set(dagbag.dags) >= EXPECTED_DAGS


def test_every_dag_file_defines_a_dag(dagbag) -> None:  # type: ignore[no-untyped-def]
    files_with_dags = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert {p.name for p in DAG_FILES} <= files_with_dags


def test_dags_have_tags_docs_retries_and_no_cycles(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag_id.startswith("kcure_"), dag_id
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id}: doc_md should tell operators what to do"
        assert dag.default_args.get("retries", 0) >= 1, dag_id
        assert not dag.catchup, dag_id
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id}"
        dag.check_cycle()


def test_dag_files_do_no_io_at_parse_time() -> None:
    """Parse-time code may define things, never call the pipeline: no calls at module level."""
    allowed = {
        "dag",
        "DAG",
        "Asset",
        "AssetAlias",
        "AssetAny",
        "AssetAll",
        "Param",
        "timedelta",
        "datetime",
        "dict",
        "list",
        "tuple",
        "task",
    }
    for path in DAG_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    break
                func = call.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                assert name in allowed or name.startswith("kcure_") or name.endswith("_asset"), (
                    f"{path.name}:{call.lineno}: module-level call {name}()"
                )


def test_dag_folder_parses_quickly(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.parse_seconds < 10


def test_the_build_runs_when_ingest_says_staging_changed_and_never_twice_at_once(dagbag) -> None:  # type: ignore[no-untyped-def]
    from kcure.assets import STAGING_UPDATED

    build = dagbag.dags["kcure_build_library"]
    ingest = dagbag.dags["kcure_ingest"]
    assert build.max_active_runs == 1
    assert STAGING_UPDATED in ingest.get_task("staging_updated").outlets
    assert ingest.get_task("staging_updated").trigger_rule == "all_done"  # a failed feed-year keeps its old version
    assert build.timetable.asset_condition == STAGING_UPDATED
    order = ["plan", "pseudonymize", "link", "protect", "check", "publish", "report"]
    for up, down in itertools.pairwise(order):
        assert down in build.get_task(up).downstream_task_ids, (up, down)


def test_every_task_alerts_operators_on_failure(dagbag) -> None:  # type: ignore[no-untyped-def]
    from kcure.alerts import on_failure

    for dag in dagbag.dags.values():
        for task in dag.tasks:
            callbacks = task.on_failure_callback
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert on_failure in callbacks, f"{dag.dag_id}.{task.task_id}"


def test_every_task_tells_the_operator_what_to_do_when_it_fails(dagbag) -> None:  # type: ignore[no-untyped-def]
    from kcure.alerts import what_to_do

    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            assert what_to_do(task.task_id) != "See the task log.", f"{dag_id}.{task.task_id}"
    # a provisioning task is never told what a build stage should do
    assert "application" in what_to_do("check_application") and "privacy gate" in what_to_do("provision")


def test_a_task_returning_a_dict_pushes_one_xcom_not_one_per_key(dagbag) -> None:  # type: ignore[no-untyped-def]
    """Airflow infers multiple_outputs from a dict return annotation and then writes every key as an
    XCom of its own; each feed-year paid 13 XCom writes for a value nothing reads key by key."""
    returning_dicts = []
    for dag_id, dag in dagbag.dags.items():
        for task in dag.tasks:
            fn = getattr(task, "python_callable", None)
            if fn is not None and "dict" in str(fn.__annotations__.get("return", "")):
                returning_dicts.append(f"{dag_id}.{task.task_id}")
                assert task.multiple_outputs is False, f"{dag_id}.{task.task_id}"
    assert "kcure_ingest.ingest_feed_year" in returning_dicts and "kcure_build_library.link" in returning_dicts
