"""Shared fixtures: one small generated landing zone, one local SparkSession, an isolated KCURE_HOME."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Isolate everything a test run writes, before Airflow or the pipeline is imported anywhere.
_RUN_HOME = Path(tempfile.mkdtemp(prefix="kcure-tests-"))
os.environ["KCURE_HOME"] = str(_RUN_HOME)
# Always this process's own: a pytest-xdist worker inherits the controller's environment, and two
# workers must never share an Airflow metadata database.
os.environ["AIRFLOW_HOME"] = str(_RUN_HOME / "airflow")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the venv interpreter, not a bare python3

SMALL_PATIENTS = 300
#: the timeout of a test item that holds whole builds (its fixtures' and its own), against the suite's
#: 900 s default, which is there to stop a hang. In a run of `make test` on a loaded two-core host (13%
#: of the CPU stolen by the hypervisor, 43 min in all), the cluster test's item took 900 s and failed
#: on that default, and the bench smoke's took 710 s
WHOLE_BUILDS_TIMEOUT = 1800

# Throwaway test secrets, 48 bytes each, only ever used on synthetic data.
TEST_LINKAGE_SECRET = "test-linkage-secret-THROWAWAY-5f0c2a9e7b1d4c3a8e6f"
TEST_LIBRARY_SECRET = "test-library-secret-THROWAWAY-9a7c1e3b5d2f4a6c8e0b"
SMALL_SEED = 7
SMALL_PART_ROWS = 20_000  # small enough that the large HIRA feed-years split into several parts


@pytest.fixture(scope="session")
def cfg():  # type: ignore[no-untyped-def]
    from kcure.core.config import load_config

    return load_config(REPO / "conf")


@pytest.fixture(scope="session")
def small_landing(tmp_path_factory: pytest.TempPathFactory, cfg) -> Path:  # type: ignore[no-untyped-def]
    """A generated landing zone: 300 patients, seed 7, default fault rates, one corrupt manifest."""
    from kcure.generator.run import generate

    out = tmp_path_factory.mktemp("landing")
    generate(cfg, out, SMALL_PATIENTS, SMALL_SEED, part_rows=SMALL_PART_ROWS, corrupt=["hira_t400:2014:sha256"])
    return out


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One local SparkSession for the whole run, tuned for tiny data (1 shuffle partition, no UI, and
    a JVM that compiles with C1 only, as a stage over a small input does: C2's compilations cost more
    CPU than they save on test-sized queries)."""
    from kcure.core.spark import build_session

    warehouse = tempfile.mkdtemp(prefix="kcure-spark-")
    event_log = Path(_RUN_HOME) / "spark-events"  # scanned by the leak test
    event_log.mkdir(parents=True, exist_ok=True)
    session = build_session(
        {"master": "local[2]", "driver_memory": "2g", "shuffle_partitions": 1, "quick_start_below_mb": 1},
        app_name="kcure-tests",
        input_mb=0,
        overrides={
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": warehouse,
            "spark.default.parallelism": "2",
            "spark.sql.adaptive.enabled": "false",
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": event_log.as_uri(),
        },
    )
    yield session
    session.stop()


#: a file that gets, per test file, the CPU the tests' own Spark session used during it (one JSON line
#: each), when this variable names one: the session is one JVM for many files, so a process sampler
#: (bench/suite_cpu.py) cannot say which files its CPU went to
_SESSION_CPU_LOG = os.environ.get("KCURE_TEST_SESSION_CPU")


def _session_cpu_seconds() -> float | None:
    """The CPU seconds (user and system) of this process's Spark JVM so far; None without one."""
    from pyspark import SparkContext

    sc = SparkContext._active_spark_context
    if sc is None:
        return None
    import runpy

    parse_stat = runpy.run_path(str(REPO / "bench" / "suite_cpu.py"))["parse_stat"]  # the sampler's own reading
    cpu, _ = parse_stat(Path(f"/proc/{sc._gateway.proc.pid}/stat").read_text())
    return float(cpu)


@pytest.fixture(scope="module", autouse=True)
def _session_cpu_per_file(request: pytest.FixtureRequest) -> Iterator[None]:
    if not _SESSION_CPU_LOG:
        yield
        return
    import json

    before = _session_cpu_seconds()
    yield
    after = _session_cpu_seconds()
    if after is not None:
        line = {"file": request.node.nodeid, "cpu_seconds": round(after - (before or 0.0), 2),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "")}  # fmt: skip
        with open(_SESSION_CPU_LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")


@pytest.fixture(scope="session")
def staged_local(small_landing: Path, cfg, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The small landing zone ingested from its local folder: (config of that home, results)."""
    from kcure.stages.ingest.ingestor import ingest

    home = tmp_path_factory.mktemp("home-local")
    local_cfg = dataclasses.replace(cfg, home=home)
    results = ingest(local_cfg, str(small_landing), run_id="local")
    return local_cfg, results


def with_pipeline(cfg, **defaults):  # type: ignore[no-untyped-def]
    """A copy of ``cfg`` whose pipeline.yaml ``defaults`` have ``defaults`` deep-merged in (one
    section each, e.g. ``spark={"master": "local[2]"}``). ``cfg`` itself is left as it was."""
    from kcure.core.config import _deep_merge

    raw = {**cfg.raw}
    pl = raw["pipeline.yaml"]
    raw["pipeline.yaml"] = {**pl, "defaults": _deep_merge(pl.get("defaults", {}), defaults)}
    return dataclasses.replace(cfg, raw=raw)


from tests.build_fixture import built, local_release  # noqa: E402,F401  (session fixtures shared by several test folders)

#: the slowest test files, collected first: `make test` runs files on two xdist workers in collection
#: order (--no-loadscope-reorder), so a long file never starts last and leaves one worker idle
SLOW_FIRST = (
    "tests/bench/test_bench_smoke.py",
    "tests/test_browser.py",
    "tests/test_cluster.py",
    "tests/projects/test_exports.py",
    "tests/projects/test_provision.py",
    "tests/pseudo/test_reuse.py",
    "tests/security/test_query_sandbox.py",
)


#: test files that share an expensive session fixture, run as one xdist work unit so that it is made
#: once per run: `secured` (tests/security/conftest.py) generates and builds a home of its own, and two
#: workers each making it cost a build (~170 s) whenever the two files fell to different workers
SHARED_UNITS = {
    "tests/security/test_query_sandbox.py": "secured",
    "tests/security/test_zone_permissions.py": "secured",
}


def work_unit(nodeid: str) -> str:
    """The xdist work unit of a test under ``--dist loadfile``: its file, or its files' shared unit."""
    path = nodeid.split("::", 1)[0]
    return SHARED_UNITS.get(path, path)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest -p no:xdist must still run
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile``, with the files of :data:`SHARED_UNITS` scheduled together.

    Not ``--dist loadgroup`` with ``xdist_group`` marks: pytest-xdist 3.8 passes a group as a suffix
    of the node id, which pytest 9.2's structured node ids drop, so the groups are silently ignored
    (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileUnits(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return FileUnits(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest as collected
