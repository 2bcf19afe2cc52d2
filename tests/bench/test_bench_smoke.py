"""A tiny run of `bench/run.py`, so the benchmark does not rot (it checks the report, not speed), and
the suite's proof that a re-delivery rebuilds only what it changed and releases the rows of a full build.

The benchmark's run is the full build (every stage, each its own process, from a fresh home) and then
the re-delivery of ``hira_t200/2016`` built incrementally over it: one run serves both tests."""

from __future__ import annotations

import json
import os
import re as regex
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from kcure.core.reuse import REUSE_KEY
from kcure.projects.keys import ProjectKey
from tests.build_fixture import same_files
from tests.conftest import REPO, WHOLE_BUILDS_TIMEOUT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(WHOLE_BUILDS_TIMEOUT)]

STAGES = ["ingest", "pseudonymize", "link", "protect", "check", "publish"]
FEED, YEAR = "hira_t200", 2016  # the benchmark's default re-delivery
VIA = ("hira_t300", "hira_t400", "hira_t530")  # the feeds that follow its rows


@dataclass
class Smoke:
    proc: subprocess.CompletedProcess[str]
    result: dict[str, Any]
    home: Path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Smoke:
    tmp = tmp_path_factory.mktemp("bench-smoke")
    results = tmp / "results"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--patients", "150", "--work", str(tmp / "work"),
         "--results", str(results), "--provision-sites", "C00-C97"],
        capture_output=True, text=True, timeout=WHOLE_BUILDS_TIMEOUT - 300, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = results.glob("*.json")
    return Smoke(proc, json.loads(path.read_text()), tmp / "work" / "home")


def test_bench_smoke_run_reports_every_stage_against_the_floor(smoke: Smoke) -> None:
    proc, r = smoke.proc, smoke.result
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


def _lineage(home: Path, build: str, feed: str) -> pa.Table:
    return ds.dataset(str(home / "linked" / build / "_lineage" / feed), format="parquet").to_table()


def test_a_re_delivery_rebuilds_only_what_it_changed_and_releases_the_rows_of_the_full_build(smoke: Smoke) -> None:
    """``hira_t200/2016`` sent again (its latest files as a new delivery): only that feed is pseudonymized
    and linked again; the feeds that follow its rows are reused through its persons' digest; protect
    rewrites T200 only and check runs T200's suite only; and the release equals the full build's, row
    for row, with the same linkage report, privacy result, gates and row counts."""
    r, home = smoke.result, smoke.home
    by = {s["stage"]: s for s in r["stages"]}
    re = r["redelivery"]
    assert re["feed_year"] == f"{FEED}/{YEAR}" and [x["stage"] for x in re["steps"]] == STAGES
    assert FEED not in re["reused"] and set(re["reused"].values()) == {"bench"} and len(re["reused"]) >= 8
    assert FEED not in re["reused_link"] and set(re["reused_link"].values()) == {"bench"}
    assert set(VIA) <= set(re["reused_link"])
    # protect rewrites T200 only (its claim lines' decisions are the same), check runs T200's suite only
    assert "T200" not in re["reused_protect"] and {"RGST", "T300"} <= set(re["reused_protect"])
    assert set(re["reused_protect"].values()) == set(re["suites_reused"].values()) == {"bench"}
    assert "T200" not in re["suites_reused"] and len(re["suites_reused"]) >= 8
    assert re["seconds"] == pytest.approx(sum(x["seconds"] for x in re["steps"]), abs=0.05)
    assert f"re-delivery of {FEED}/{YEAR}" in smoke.proc.stdout and "identical" in smoke.proc.stdout

    # reused means linked, not written again: the same files; the re-delivered feed is new files
    pseudo, linked = home / "pseudonymized", home / "linked"
    for feed in re["reused"]:
        assert same_files(pseudo / "bench" / feed, pseudo / "bench-re" / feed), feed
    for feed in re["reused_link"]:
        assert same_files(linked / "bench" / "_lineage" / feed, linked / "bench-re" / "_lineage" / feed), feed
    assert not same_files(pseudo / "bench" / FEED, pseudo / "bench-re" / FEED)
    keys = [(pseudo / b / FEED / REUSE_KEY).read_text() for b in ("bench", "bench-re")]
    assert keys[0] != keys[1]  # a new staged version: a new key

    # the re-delivered feed's lineage is the full build's, row for row, its 2016 rows of the new delivery
    full, again = _lineage(home, "bench", FEED), _lineage(home, "bench-re", FEED)
    in_year = pc.equal(full["_year"], YEAR)
    (old,) = set(pc.filter(full["_delivery"], in_year).to_pylist())
    assert set(pc.filter(again["_delivery"], pc.equal(again["_year"], YEAR)).to_pylist()) == {old + 1}
    i = full.schema.get_field_index("_delivery")
    expected = full.set_column(
        i, full.schema.field(i), pc.if_else(in_year, pa.scalar(old + 1, full["_delivery"].type), full["_delivery"])
    )
    assert full.num_rows > 0 and sorted(map(repr, again.to_pylist())) == sorted(map(repr, expected.to_pylist()))

    # the release: every table row for row, and the manifests, equal to the full build's
    assert re["compared"]["equal"], re["compared"]
    compared = re["compared"]["tables"]
    assert sum(t["rows"] for t in compared.values()) == by["publish"]["rows_out"] > 0  # every row, not none
