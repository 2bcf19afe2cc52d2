"""Distributed mode, proven: a real Spark standalone master and worker on 127.0.0.1, the build's
Spark stages submitted to it with spark-submit, and the release equal to the local-mode release."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kcure.core.spark import QUICK_START
from tests.build_fixture import Build, Published
from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET, WHOLE_BUILDS_TIMEOUT

COMPARE = runpy.run_path(str(REPO / "bench" / "compare_releases.py"))  # main() runs only as a script

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _master_state(ui_port: int) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as r:
        return dict(json.loads(r.read()))


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A Spark standalone master and one worker, started with the installed pyspark's spark-class."""
    from pyspark.find_spark_home import _find_spark_home

    spark_class = str(Path(_find_spark_home()) / "bin" / "spark-class")
    work = tmp_path_factory.mktemp("standalone")
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(work / "worker")}
    logs = [(work / "master.log").open("w"), (work / "worker.log").open("w")]
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
         "--webui-port", str(ui)],
        env=env, stdout=logs[0], stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"spark://127.0.0.1:{port}"
    worker = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "2",
         "--memory", "3g", "--webui-port", str(worker_ui), url],
        env=env, stdout=logs[1], stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if [w for w in _master_state(ui)["workers"] if w["state"] == "ALIVE"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the standalone worker did not register:\n" + (work / "worker.log").read_text()[-3000:])
            time.sleep(1)
        yield url, ui
    finally:
        for p in (worker, master):
            p.terminate()
        for p in (worker, master):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


def test_a_release_built_on_a_standalone_cluster_equals_the_local_release(  # type: ignore[no-untyped-def]
    standalone, local_release: Published, built: Build, tmp_path: Path
) -> None:
    url, ui = standalone
    home = local_release.cfg.home  # the same staged input as the local release
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline_yaml = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline_yaml["defaults"]["spark"].update(
        {
            "master": url,
            "driver_memory": "1g",
            "shuffle_partitions": 2,
            "conf": {
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.executor.memory": "2g",
                "spark.ui.enabled": "false",
                # tiny data: driver and executors compile with C1 only (and its larger code cache), as a
                # local stage over a small input does (kcure.core.spark.quick_start); with C2 this test
                # cost 354 CPU s, with C1 229
                "spark.driver.extraJavaOptions": QUICK_START,
                "spark.executor.extraJavaOptions": QUICK_START,
            },
        }
    )
    # every stage computes on the cluster: with reuse on, link and protect would link the local build's
    # outputs (this home holds a copy of them, made from the same input) and prove nothing about the cluster
    pipeline_yaml["defaults"]["builds"]["reuse"] = False
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_yaml), encoding="utf-8")
    env = {
        **os.environ,
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "kcure.cli", "build", "--build", "c1", "--release", "cluster"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    logs = "\n".join(p.read_text()[-3000:] for p in sorted((home / "reports" / "builds" / "c1").glob("*.log")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    print(f"cluster build: {seconds:.0f}s")

    # every Spark stage really ran on the cluster: its driver reported the master, the master ran its app
    timings = []
    for stage in ("pseudonymize", "link", "protect", "check"):
        summary = json.loads((home / "reports" / "builds" / "c1" / f"{stage}.json").read_text())
        assert summary["master"] == url, stage
        assert not summary.get("reused"), (stage, summary.get("reused"))  # computed here, not linked from t1
        local_s = json.loads((built.home / "reports" / "builds" / "t1" / f"{stage}.json").read_text())["seconds"]
        timings.append(f"{stage} {summary['seconds']:.1f}s (local {local_s:.1f}s)")
    print("stage wall times on the standalone cluster: " + ", ".join(timings))
    apps = {a["name"] for a in _master_state(ui)["completedapps"]}
    assert {f"kcure-{s}-c1" for s in ("pseudonymize", "link", "protect", "check")} <= apps

    # the local-mode release of the same input, row for row in every table, with the same linkage report,
    # privacy result, gates and row counts (the benchmark's comparison, which reads both with DuckDB only)
    compared = COMPARE["compare_releases"](home, "local", home, "cluster")
    assert compared["equal"], compared
    assert sum(t["rows"] for t in compared["tables"].values()) > 10_000
