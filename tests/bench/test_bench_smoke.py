"""A tiny run of `bench/run.py`, so the benchmark does not rot. It checks the report, not speed."""

from __future__ import annotations

import json
import os
import re as regex
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from kcure.projects.keys import ProjectKey
from tests.conftest import REPO, WHOLE_BUILDS_TIMEOUT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]

STAGES = ["ingest", "pseudonymize", "link", "protect", "check", "publish"]


def test_bench_smoke_run_reports_every_stage_against_the_floor(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--patients", "150", "--work", str(tmp_path / "work"),
         "--results", str(results), "--provision-sites", "C00-C97"],
        capture_output=True, text=True, timeout=WHOLE_BUILDS_TIMEOUT - 300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = results.glob("*.json")
    r = json.loads(path.read_text())
    assert [s["stage"] for s in r["stages"]] == STAGES
    floor = r["floor"]["seconds"]
    for s in r["stages"]:
        assert s["seconds"] > 0 and s["cpu_seconds"] > 0, s
        assert s["rows_in"] > 0 and s["rows_out"] > 0, s
        assert s["x_floor"] == round(s["seconds"] / floor, 2)
        assert 0 <= s["sampler_cpu_seconds"] < s["seconds"] / 2, s  # measuring takes under half a core
    by = {s["stage"]: s for s in r["stages"]}
    assert by["ingest"]["rows_in"] == r["landing"]["rows"] >= by["ingest"]["rows_out"]
    assert by["pseudonymize"]["rows_in"] == by["ingest"]["rows_out"]
    assert by["pseudonymize"]["peak_rss_mb"] > 250  # the JVM's memory is counted, not only Python's
    assert by["publish"]["rows_out"] == by["check"]["rows_out"] == by["protect"]["rows_out"]
    assert set(by["check"]["phases"]) == {"expectations", "referential_integrity", "accounting"}
    assert r["pipeline"]["seconds"] == pytest.approx(sum(s["seconds"] for s in r["stages"]), abs=0.05)
    assert r["machine"]["cores"] >= r["machine"]["cores_used"] == len(os.sched_getaffinity(0)) >= 1
    assert len(r["git_sha"]) == 40 or r["git_sha"] == "unknown"
    assert r["generate"]["seconds"] > 0  # generation is timed, apart from the pipeline
    for name in STAGES:
        assert f"| {name} |" in proc.stdout
    # provisioning: read every release row of the ten tables, wrote the extract, against its own floor
    pv = r["provision"]
    assert pv["rows_in"] == pv["floor"]["rows_in"] >= pv["rows_out"] > 0
    assert pv["x_floor"] == round(pv["seconds"] / pv["floor"]["seconds"], 2)
    assert pv["cohort"]["kept"] > 0 and "| provision |" in proc.stdout
    # with the benchmark's own throwaway project key, not one made afresh: its dates shift, and so its
    # cohort is matched, alike in every run
    bench = runpy.run_path(str(REPO / "bench" / "run.py"))  # its constants; main() runs only as a script
    bench_key = ProjectKey(bench["BENCH_PROJECT"], bytes.fromhex(bench["PROJECT_KEY"]))
    assert pv["key"] == {"fingerprint": bench_key.fingerprint(), "created": False}
    # Spark's own stage timings come from the jobs' event logs
    apps = {f"kcure-{s}-{b}" for s in ("pseudonymize", "link", "protect", "check") for b in ("bench", "bench-re")}
    apps |= {"kcure-provision-kc20261130900"}
    assert {s["app"] for s in r["spark_stages"]} <= apps
    assert r["spark_stages"] and r["spark_stages"][0]["seconds"] >= r["spark_stages"][-1]["seconds"]
    # each Spark step's tasks, from its own application's log: CPU within run time (run time is whole
    # milliseconds per task, CPU nanoseconds), bytes written where the step writes
    spark_steps = [*r["stages"], *r["redelivery"]["steps"]]
    for s in spark_steps:
        t = s.get("spark_tasks")
        assert (t is not None) == (s["stage"] in {"pseudonymize", "link", "protect", "check"}), s
        if t is not None:
            assert t["tasks"] > 0 and 0 < t["cpu_seconds"] <= t["run_seconds"] + t["tasks"] * 0.001 + 0.1, t
            assert t["off_cpu_share"] < 1 and (t["output_mb"] > 0) == (s["stage"] != "check"), t
    assert pv["spark_tasks"]["tasks"] > 0 and pv["spark_tasks"]["output_mb"] > 0
    table = proc.stdout.split("| Spark tasks |")[1].split("\n\n")[0]
    assert regex.search(r"^\| link \| [\d,]+ \| [\d.,]+ \| [\d.,]+ \| -?\d+% \|", table, regex.M), table
    assert "| re-delivery check |" in table and "| provision |" in table
    # the jobs name their work ("link: hira_t300 -> T300"); which stage's jobs are among the ten slowest
    # depends on the machine's load at 150 patients, so any pipeline stage's named jobs will do
    named = {s["work"].split(": ")[0] for s in r["spark_stages"] if ": " in s["work"]}
    assert named & {"pseudonymize", "link", "protect", "check"}, r["spark_stages"]
    # the re-delivery of hira_t200/2016: only that feed pseudonymized again, and the same released rows
    re = r["redelivery"]
    assert re["feed_year"] == "hira_t200/2016" and [x["stage"] for x in re["steps"]] == STAGES
    assert "hira_t200" not in re["reused"] and set(re["reused"].values()) == {"bench"} and len(re["reused"]) >= 8
    assert "hira_t200" not in re["reused_link"] and set(re["reused_link"].values()) == {"bench"}
    # protect rewrites T200 only (its claim lines' decisions are the same), check runs T200's suite only
    assert "T200" not in re["reused_protect"] and {"RGST", "T300"} <= set(re["reused_protect"])
    assert set(re["reused_protect"].values()) == set(re["suites_reused"].values()) == {"bench"}
    assert "T200" not in re["suites_reused"] and len(re["suites_reused"]) >= 8
    assert re["compared"]["equal"], re["compared"]
    compared = re["compared"]["tables"]
    assert sum(t["rows"] for t in compared.values()) == by["publish"]["rows_out"] > 0  # every row, not none
    assert re["seconds"] == pytest.approx(sum(x["seconds"] for x in re["steps"]), abs=0.05)
    assert "re-delivery of hira_t200/2016" in proc.stdout and "identical" in proc.stdout
