"""bench/suite_cpu.py: processes named by kind, CPU counted once per process, and a real run sampled."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

S = runpy.run_path(str(REPO / "bench" / "suite_cpu.py"))  # its functions; main() runs only as a script


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java -cp /v/pyspark/jars/* org.apache.spark.deploy.SparkSubmit "
         "--conf spark.local.dir=/tmp/pytest-of-root/x pyspark-shell", "Spark driver JVMs (and other JVMs)"),
        ("/usr/bin/java -cp x org.apache.spark.deploy.SparkSubmit --conf spark.app.name=kcure-link-web1 "
         "--conf spark.master=local[2] pyspark-shell", "Spark driver JVMs: kcure-link"),
        ("/usr/bin/java -cp x org.apache.spark.deploy.SparkSubmit --conf spark.app.name=kcure-tests pyspark-shell",
         "Spark driver JVMs: kcure-tests"),
        ("/usr/bin/java -XX:ArchiveClassesAtExit=/v/a.jsa -cp x org.apache.spark.deploy.SparkSubmit --conf "
         "spark.app.name=kcure-class-archive pyspark-shell",
         "Spark driver JVMs: kcure-class-archive"),
        ("/usr/bin/java -cp x org.apache.spark.executor.CoarseGrainedExecutorBackend --driver-url y",
         "Spark executor JVMs"),
        ("/usr/bin/java -cp x org.apache.spark.deploy.worker.Worker --host 127.0.0.1",
         "Spark standalone master and worker"),
        ("/v/bin/python -m pyspark.daemon pyspark.worker", "Spark's Python workers"),
        ("/v/bin/python -m kcure.cli build --build t1 --truth /tmp/pytest-of-root/l/_truth", "kcure build"),
        (".venv/bin/kcure project provision kc1", "kcure project"),
        ("/v/bin/python /repo/jobs/link.py --build b1", "jobs/link.py"),
        ("airflow worker -- 01a23782-d8d5", "airflow worker"),
        ("/v/bin/python /v/bin/airflow dags test kcure_ingest", "airflow dags"),
        ("/v/bin/python -u -c import sys;exec(eval(sys.stdin.readline()))", "pytest and its workers' own Python"),
        ("/v/bin/pytest -n 2 --dist loadfile", "pytest and its workers' own Python"),
        ("/v/bin/python /repo/bench/run.py --patients 150 --work /tmp/pytest-of-root/w", "bench/run.py"),
        ("/usr/bin/sleep 5", "sleep"),
        ("", "(no command line)"),
    ],
)  # fmt: skip
def test_a_process_is_named_by_what_it_runs(cmdline: str, kind: str) -> None:
    assert S["kind"](cmdline) == kind


def test_each_process_counts_the_cpu_it_used_while_sampled_once() -> None:
    t = S["Tracker"](began_ticks=1000)
    t.see(10, 1500, 2.0, "/v/bin/python -m kcure.cli ingest")  # started after sampling began: all of it
    t.see(10, 1500, 5.0, "/v/bin/python -m kcure.cli ingest")
    t.see(11, 500, 40.0, "/v/bin/python -m kcure.cli ingest")  # already running: from its first sight
    t.see(11, 500, 41.5, "/v/bin/python -m kcure.cli ingest")
    t.see(10, 2500, 1.0, "/v/bin/python /repo/jobs/link.py")  # pid 10 reused: a new process
    t.see(12, 1200, 0.5, "bash /v/pyspark/bin/spark-submit x")
    t.see(12, 1200, 9.5, "/usr/bin/java -cp x org.apache.spark.deploy.SparkSubmit")  # it exec'd a JVM
    t.see(12, 1200, 9.6, "")  # a zombie: no command line, keeps its kind
    assert t.by_kind() == {"Spark driver JVMs (and other JVMs)": 9.6, "kcure ingest": 6.5, "jobs/link.py": 1.0}


def test_a_stat_line_gives_cpu_and_start_time_whatever_the_command_name_holds() -> None:
    tick = S["TICKS"]
    head = "S 1 2 3 0 -1 4194304 5 0 0 0"  # fields 3-13: state .. cmajflt
    tail = f"{3 * tick} {2 * tick} 7 7 20 0 45 0 123456"  # fields 14-22: utime, stime .. starttime
    fields = [*head.split(), *tail.split()]
    line = "4242 (java) (x y)) " + " ".join(fields) + " 99 100\n"
    assert S["parse_stat"](line) == (5.0, 123456)


def test_a_real_command_is_sampled_and_its_cpu_found(tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    pass\n"
    python = tmp_path / "kcure-cpu-burner"  # a name no other process on the machine has: its own kind
    python.symlink_to(sys.executable)
    r = S["run"]([str(python), "-c", burn], 0.1)
    assert r["exit"] == 0 and r["cores"] >= 1
    name = S["kind"](f"{python} -c")
    assert name == "kcure-cpu-burner"
    assert 0.7 <= r["by_kind"][name] <= 1.5, r  # the last tenth of a second may end between two samples
    assert r["machine_cpu_seconds"] >= r["by_kind"][name] - 0.2  # the machine's counter includes it
    text = S["table"](r)
    assert f"| {name} |" in text and "exit 0" in text
