"""The Spark helpers: schemas and row counts from Parquet footers (instead of Spark jobs), and the session settings."""

from __future__ import annotations

import os
import threading
import time
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kcure.core.spark import concurrent_jobs, local_cores, parquet_rows, parquet_schema, run_concurrently

pytestmark = pytest.mark.unit


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "hira_t200"
    t = pa.table({"MID": ["a", "b", None], "N": pa.array([1, 2, 3], pa.int16()), "D": pa.array([1, 2, 3], pa.date32())})
    for year, rows in ((2015, t), (2016, t.slice(0, 2))):
        (root / f"_year={year}").mkdir(parents=True)
        pq.write_table(rows, root / f"_year={year}" / "part-00000.snappy.parquet")
    (root / "_SUCCESS").write_text("")  # Spark's marker, our reuse key and checksum files are not data
    (root / "_REUSE_KEY").write_text("{}")
    (root / "_year=2015" / ".part-00000.snappy.parquet.crc").write_bytes(b"\0")
    (root / "_temporary" / "0").mkdir(parents=True)
    pq.write_table(t, root / "_temporary" / "0" / "part-99999.parquet")  # an unfinished write
    return root


def test_rows_are_summed_over_data_files_only(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    assert parquet_rows(root) == 5
    assert parquet_rows(root / "_year=2016" / "part-00000.snappy.parquet") == 2


def test_schema_adds_the_partition_column_last_and_makes_every_field_nullable(tmp_path: Path) -> None:
    from pyspark.sql.types import DateType, IntegerType, ShortType, StringType

    schema = parquet_schema(_folder(tmp_path))
    assert [(f.name, f.dataType, f.nullable) for f in schema.fields] == [
        ("MID", StringType(), True),
        ("N", ShortType(), True),
        ("D", DateType(), True),
        ("_year", IntegerType(), True),
    ]
    empty = tmp_path / "empty"
    (empty / "_temporary").mkdir(parents=True)
    assert parquet_schema(empty) is None  # no data file: the caller lets Spark decide


def test_schema_is_the_files_own_when_spark_recorded_other_columns(tmp_path: Path) -> None:
    """A file Spark wrote and another tool rewrote keeps Spark's schema record: the columns the file
    really holds win, so a column added later is seen (and gated), never silently left out."""
    import json

    from pyspark.sql.types import StringType, StructField, StructType

    spark_schema = StructType([StructField("SN_KEY", StringType(), True)])
    meta = {b"org.apache.spark.sql.parquet.row.metadata": json.dumps(spark_schema.jsonValue()).encode()}
    table = pa.table({"SN_KEY": ["a"]}).replace_schema_metadata(meta)
    pq.write_table(table, tmp_path / "spark.parquet")
    assert parquet_schema(tmp_path / "spark.parquet") == spark_schema
    pq.write_table(table.append_column("PHONE", pa.array(["x"])), tmp_path / "rewritten.parquet")
    assert parquet_schema(tmp_path / "rewritten.parquet").fieldNames() == ["SN_KEY", "PHONE"]


def test_schema_holds_a_column_that_only_a_later_file_has(tmp_path: Path) -> None:
    """Spark's own inference reads one footer: a PHONE column in the second file of a table would go
    unread, so ungated, and the release would serve the file. Every footer counts here."""
    root = _folder(tmp_path)
    later = root / "_year=2016" / "part-00001.snappy.parquet"
    pq.write_table(pa.table({"MID": ["c"], "PHONE": ["010-1234-5678"]}), later)
    assert parquet_schema(root).fieldNames() == ["MID", "N", "D", "PHONE", "_year"]
    later.unlink()
    assert parquet_schema(root).fieldNames() == ["MID", "N", "D", "_year"]


def test_spark_web_ui_is_off_unless_the_configuration_asks_for_it() -> None:
    from kcure.core.spark import session_conf

    assert session_conf({"master": "local[2]"})["spark.ui.enabled"] == "false"
    assert session_conf({"master": "local[2]", "ui": True})["spark.ui.enabled"] == "true"
    conf = {"master": "local[2]", "conf": {"spark.ui.enabled": "true", "spark.ui.port": "0"}}
    assert session_conf(conf)["spark.ui.enabled"] == "true"  # an explicit Spark setting still wins


def test_stage_code_digests_are_the_same_from_the_zip_spark_submit_ships(tmp_path: Path) -> None:
    """On a cluster the stage imports kcure from the --py-files zip: the reuse key must not depend on it."""
    import subprocess
    import sys
    import zipfile

    import kcure
    from kcure.core.reuse import code_digest

    stages = ("kcure.stages.pseudonymize", "kcure.stages.link.linker")
    src = Path(kcure.__file__).parent
    archive = tmp_path / "kcure-py-files.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(src.rglob("*.py")):
            z.write(p, Path("kcure") / p.relative_to(src))
    probe = (
        f"import sys; sys.path.insert(0, {str(archive)!r}); import kcure; assert '.zip' in kcure.__file__; "
        f"from kcure.core.reuse import code_digest; print(*(code_digest(m) for m in {stages!r}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [code_digest(m) for m in stages] and all(len(d) == 64 for d in out)
    assert out[0] != out[1]  # each stage's own module is part of its digest


def test_preload_imports_in_a_thread_and_leaves_a_failed_import_to_the_stage() -> None:
    import sys

    from kcure.core.spark import _preload

    assert _preload(()) is None
    sys.modules.pop("tabnanny", None)
    thread = _preload(("kcure_no_such_module", "tabnanny"))
    assert thread is not None
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert "tabnanny" in sys.modules  # the failed import before it did not stop it
    assert "kcure_no_such_module" not in sys.modules


def test_only_a_small_local_input_starts_the_jvm_with_c1_only() -> None:
    from kcure.core.spark import QUICK_START, session_conf

    java = "spark.driver.extraJavaOptions"
    cfg = {"master": "local[2]", "quick_start_below_mb": 64, "class_archive": False}
    assert session_conf(cfg, input_mb=10)[java] == QUICK_START
    assert java not in session_conf(cfg, input_mb=640)  # large: C2's code pays for its compilations
    assert java not in session_conf(cfg)  # size unknown
    assert java not in session_conf({**cfg, "master": "yarn"}, input_mb=1)  # a cluster's JVMs are not ours to tune
    assert java not in session_conf({"master": "local[2]", "class_archive": False}, input_mb=1)  # not configured
    mine = {**cfg, "conf": {java: "-Dkcure.x=1"}}
    assert session_conf(mine, input_mb=1)[java] == f"-Dkcure.x=1 {QUICK_START}"  # added to, never replacing


def test_a_quick_started_jvm_keeps_the_code_cache_of_a_tiered_one() -> None:
    """With C1 alone HotSpot reserves 48 MB for compiled code, which a 500-patient build filled (the JVM
    then stops compiling); the quick-start options keep the tiered default. Asked of the JVM itself."""
    import subprocess

    from kcure.core.classdata import _java
    from kcure.core.spark import QUICK_START

    java = _java()  # the java pyspark's launcher runs
    assert java is not None, "no java: Spark needs one"

    def reserved(*options: str) -> int:
        out = subprocess.run([java, *options, "-XX:+PrintFlagsFinal", "-version"], capture_output=True, text=True)
        (line,) = [x for x in out.stdout.splitlines() if " ReservedCodeCacheSize " in x]
        return int(line.split("=")[1].split()[0])

    c1_alone, tiered = reserved("-XX:TieredStopAtLevel=1"), reserved()
    assert c1_alone < tiered  # what the quick start would get without its own setting
    assert reserved(*QUICK_START.split()) >= tiered


def test_the_staged_size_is_measured_only_where_staging_is_a_local_folder(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import copy
    import dataclasses

    from kcure.core.spark import staged_mb

    c = dataclasses.replace(cfg, home=tmp_path)
    assert staged_mb(c) == 0.0  # nothing staged yet
    (tmp_path / "staging" / "f").mkdir(parents=True)
    (tmp_path / "staging" / "f" / "part.parquet").write_bytes(b"\0" * 2**20)
    assert staged_mb(c) == 1.0
    raw = copy.deepcopy(c.raw)
    raw["pipeline.yaml"]["defaults"]["paths"]["staging"] = "s3a://bucket/staging"
    assert staged_mb(dataclasses.replace(c, raw=raw)) is None


MASTERS = [("local", 1), ("local[2]", 2), ("local[3, 2]", 3), ("local[*]", len(os.sched_getaffinity(0))), ("yarn", 0)]


@pytest.mark.parametrize(("master", "cores"), [*MASTERS, ("spark://h:7077", 0)])
def test_a_local_masters_cores_are_its_task_threads(master: str, cores: int) -> None:
    assert local_cores({"master": master}) == cores


def test_only_a_small_local_input_is_worked_on_concurrently() -> None:
    small = {"master": "local[2]", "concurrent_below_mb": 64}
    assert concurrent_jobs(small, 10.0) == 2
    assert concurrent_jobs(small, 64.0) == 1  # at the limit: one at a time
    assert concurrent_jobs(small, None) == 1  # a size not known (staging on S3)
    assert concurrent_jobs({**small, "concurrent_below_mb": 0}, 10.0) == 1  # 0: never
    assert concurrent_jobs({"master": "local[2]"}, 10.0) == 1  # not set: never
    assert concurrent_jobs({**small, "master": "yarn"}, 10.0) == 1  # a cluster runs its own tasks at once


def test_tasks_run_at_once_and_their_results_keep_the_order_of_the_tasks() -> None:
    both = threading.Barrier(2, timeout=10)  # each task waits for the other: only concurrent runs pass it
    second_done = threading.Event()

    def first() -> str:
        both.wait()
        assert second_done.wait(10)  # ends after the second task
        return "first"

    def second() -> str:
        both.wait()
        second_done.set()
        return "second"

    assert run_concurrently([first, second], 2) == ["first", "second"]
    assert run_concurrently([lambda: threading.current_thread().name], 1) == [threading.current_thread().name]


def test_a_failure_starts_no_further_task_and_is_raised_once_the_running_ones_end() -> None:
    started: list[int] = []
    failing = threading.Event()
    ended = threading.Event()

    def long_running() -> int:  # the first (largest) task, still running when another fails
        started.append(0)
        assert failing.wait(10)
        time.sleep(0.3)
        ended.set()
        return 0

    def fails() -> int:
        started.append(1)
        failing.set()
        raise ValueError("feed 1 failed")

    def later(n: int) -> int:
        started.append(n)
        time.sleep(0.05)
        return n

    with pytest.raises(ValueError, match="feed 1 failed"):
        run_concurrently([long_running, fails, *(partial(later, n) for n in range(2, 10))], 2)
    assert ended.is_set()  # the error came after the running task ended, not beside it
    # waiting for the tasks in order would have run all eight later tasks while the first one ran;
    # at most the one a free thread took before the failure was seen has started
    assert started[:2] in ([0, 1], [1, 0]) and len(started) <= 3
