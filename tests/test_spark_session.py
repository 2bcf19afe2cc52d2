from __future__ import annotations

from pathlib import Path

import pytest

from tests.generator import delivered as dv

pytestmark = pytest.mark.spark


def test_session_is_local_tuned_for_tiny_data_and_redacts_secrets(spark) -> None:  # type: ignore[no-untyped-def]
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.master").startswith("local")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "1"
    assert conf.get("spark.ui.enabled") == "false"
    jvm = spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    assert "-XX:TieredStopAtLevel=1" in list(jvm)  # the running JVM compiles with C1 only: tiny queries
    assert "secret" in conf.get("spark.redaction.regex")


def test_spark_reads_a_delivered_feed_with_every_delivered_row(spark, small_landing: Path) -> None:  # type: ignore[no-untyped-def]
    m = dv.manifest(small_landing, "kccr_registry", 2015)
    path = small_landing / "kccr_registry" / "2015" / "d001" / m.files[0].name
    df = spark.read.option("header", True).option("encoding", "UTF-8").option("mode", "PERMISSIVE").csv(str(path))
    assert df.columns[:3] == ["HCODE", "PTNO", "RRN"]
    assert df.count() == m.rows


def test_a_driver_made_frame_is_a_local_relation_with_the_rows_and_types_asked_for(spark) -> None:  # type: ignore[no-untyped-def]
    """Through Arrow, not pickled rows: its plan is a LocalRelation (a Python list's would be an RDD
    that Python workers unpickle), and it holds exactly the rows, nulls and types it was given."""
    import datetime as dt

    from pyarrow.lib import ArrowInvalid

    from kcure.core.spark import local_frame

    rows = [("a", 1, None, b"\x00\xff", dt.date(2015, 1, 2)), (None, None, 2.5, None, None)]
    df = local_frame(spark, rows, "SN_KEY string, n int, x double, k binary, d date")
    assert df._jdf.queryExecution().analyzed().nodeName() == "LocalRelation"
    assert df.dtypes == [("SN_KEY", "string"), ("n", "int"), ("x", "double"), ("k", "binary"), ("d", "date")]
    assert [tuple(bytes(v) if isinstance(v, bytearray) else v for v in r) for r in df.collect()] == rows
    empty = local_frame(spark, [], "SN_KEY string")
    assert empty.count() == 0 and empty.dtypes == [("SN_KEY", "string")]
    with pytest.raises(ValueError, match="not a row schema"):
        local_frame(spark, [(1,)], "int")
    with pytest.raises(ArrowInvalid):  # truncated: refused, as createDataFrame refuses a float for an int
        local_frame(spark, [(2015.5,)], "y int")
    with pytest.raises(TypeError, match="tuples or lists"):
        local_frame(spark, [{"SN_KEY": "a"}], "SN_KEY string")


def test_the_spark_icd10_block_agrees_with_the_python_one(spark) -> None:  # type: ignore[no-untyped-def]
    from kcure.core import kanon
    from kcure.core.recoding import _block

    codes = ["C16", "c169", "C00", "C14", "C15", "C26", "C50", "C97", "C98", "D09", "C2", "", None, "C4A"]
    rows = spark.createDataFrame([(c,) for c in codes], "KCD string").select("KCD", _block("KCD").alias("b")).collect()
    for r in rows:
        expected = kanon.icd10_block(r["KCD"])
        assert r["b"] == (None if expected == kanon.SUPPRESSED else expected), r


def test_a_stage_run_in_a_process_with_a_session_uses_it_and_leaves_it_running(  # type: ignore[no-untyped-def]
    spark, cfg, tmp_path: Path, monkeypatch
) -> None:
    import dataclasses

    from pyspark.sql import SparkSession

    from kcure import pipeline
    from tests.unit.test_stage_model import _publish_marker

    c = dataclasses.replace(cfg, home=tmp_path)
    monkeypatch.setenv("KCURE_LIBRARY_SECRET", "B" * 40)
    _publish_marker(c, "r1", "b1")
    (tmp_path / "reports" / "builds" / "b1").mkdir(parents=True)
    (tmp_path / "reports" / "builds" / "b1" / "pseudonymize.json").write_text("{}")
    with pytest.raises(pipeline.StageFailed, match="build b1 is published"):  # refused after the session is up
        pipeline.run_stage(c, pipeline.Plan("b1", "r1", ("link",)), "link")
    assert SparkSession.getActiveSession() is spark and spark.range(3).count() == 3  # not stopped, not replaced
    assert spark.conf.get("spark.sql.shuffle.partitions") == "1"


@pytest.mark.slow
def test_a_made_class_archive_is_mapped_by_the_next_jvm_and_a_damaged_one_is_refused(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch
) -> None:
    """`kcure spark-archive`: the archive a JVM wrote as it exited is tried by another before it is
    moved into place; the JVM then maps thousands of Spark's classes from it. A damaged archive
    fails that try (a JVM given one crashes), which is why nothing is moved into place untried."""
    import subprocess
    import sys

    from kcure.core import classdata

    monkeypatch.setenv("KCURE_CLASS_ARCHIVE_DIR", str(tmp_path / "jvm"))
    path = classdata.make()
    assert path is not None and classdata.usable() == path
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", path.name]  # nothing half-written beside it
    assert path.stat().st_mode & 0o777 == 0o644 and path.parent.stat().st_mode & 0o777 == 0o755

    def start(archive: Path, log: Path) -> int:
        option = f"-XX:SharedArchiveFile={archive} -Xshare:on -Xlog:class+load=info:file={log}"
        cmd = [sys.executable, "-m", "kcure.core.classdata", option]
        return subprocess.run(cmd, capture_output=True, cwd=tmp_path).returncode  # cwd: where a crash report goes

    assert start(path, tmp_path / "classes.log") == 0
    loaded = (tmp_path / "classes.log").read_text().splitlines()
    shared = [line for line in loaded if "shared objects file (top)" in line]
    assert len(shared) > 2000 and any("org.apache.spark.sql" in line for line in shared)
    damaged = tmp_path / "damaged.jsa"
    damaged.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert start(damaged, tmp_path / "damaged.log") != 0


def test_the_tests_session_cpu_is_read_from_its_own_jvm(spark) -> None:  # type: ignore[no-untyped-def]
    """KCURE_TEST_SESSION_CPU's figure (tests/conftest.py): the CPU of this process's Spark JVM, which
    grows while the JVM computes."""
    import os

    from tests.conftest import _session_cpu_seconds

    before, ours = _session_cpu_seconds(), os.times()
    assert before is not None and before > 0
    spark.range(3_000_000).selectExpr("sum(id * id % 7)").collect()
    after, ours_after = _session_cpu_seconds(), os.times()
    assert after is not None
    # the JVM computed while this process waited for it: a figure read from this process would not grow so
    assert after - before > (ours_after.user + ours_after.system) - (ours.user + ours.system)
