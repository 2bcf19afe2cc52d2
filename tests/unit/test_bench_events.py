"""bench/run.py: what the benchmark reads from Spark's event logs, over logs with known sums."""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.unit

B = runpy.run_path(str(REPO / "bench" / "run.py"))  # its functions; main() runs only as a script


def _task(stage: int, cpu_s: float, run_s: float, **mb: float) -> dict[str, Any]:
    mib = 2**20
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Task Metrics": {
            "Executor CPU Time": int(cpu_s * 1e9),
            "Executor Run Time": int(run_s * 1000),
            "JVM GC Time": 200,
            "Disk Bytes Spilled": int(mb.get("spill", 0) * mib),
            "Shuffle Read Metrics": {"Fetch Wait Time": 100},
            "Shuffle Write Metrics": {"Shuffle Bytes Written": int(mb.get("shuffle", 0) * mib)},
            "Input Metrics": {"Bytes Read": int(mb.get("input", 0) * mib)},
            "Output Metrics": {"Bytes Written": int(mb.get("output", 0) * mib)},
        },
    }


def _job(job: int, desc: str | None, stages: list[int], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    props = {"spark.job.description": desc} if desc else {}
    return [
        {"Event": "SparkListenerJobStart", "Job ID": job, "Submission Time": start_ms, "Stage IDs": stages,
         "Properties": props},
        {"Event": "SparkListenerJobEnd", "Job ID": job, "Completion Time": end_ms},
    ]  # fmt: skip


def _write_v2(events: Path, app_id: str, parts: list[list[dict[str, Any]]], cut_short: bool = False) -> None:
    """A rolling (v2) event log: a folder of numbered files, and an appstatus marker that is not read."""
    folder = events / f"eventlog_v2_{app_id}"
    folder.mkdir(parents=True)
    task = json.dumps(_task(0, 100.0, 100.0))  # read as a log, either would add a task
    (folder / f"appstatus_{app_id}").write_text(task + "\n")
    (folder / f".appstatus_{app_id}.crc").write_text(task + "\n")
    for i, evs in enumerate(parts, start=1):
        text = "\n".join(json.dumps(e) for e in evs) + "\n"
        if cut_short and i == len(parts):
            text += '{"Event": "SparkListenerTaskEnd", "Stage'  # the job ended mid-line
        (folder / f"events_{i}_{app_id}").write_text(text)


def test_task_time_is_summed_per_stage_process_and_per_kind_of_work(tmp_path: Path) -> None:
    events = tmp_path / "spark-events"
    start = {"Event": "SparkListenerApplicationStart", "App Name": "kcure-link-b1"}
    # the job's start is in file 2 and its tasks and end in file 10: the files are read in number order,
    # not name order (events_10 sorts before events_2, and its tasks would belong to no known job)
    job0 = _job(0, "link: hira_t300 -> T300", [0, 1], 1_000, 21_000)
    tasks = [_task(0, 6.0, 8.0, input=10, shuffle=4), _task(1, 2.0, 2.0, output=3, spill=1)]
    _write_v2(
        events, "local-1",
        [[start], [job0[0]]] + [[] for _ in range(7)]
        + [[*tasks, job0[1], *_job(1, None, [2], 21_000, 23_000), _task(2, 1.0, 2.0)]],
        cut_short=True,
    )  # fmt: skip
    other = {"Event": "SparkListenerApplicationStart", "App Name": "kcure-check-b1"}
    _write_v2(events, "local-2", [[other, *_job(0, "check: T300", [0], 0, 5_000), _task(0, 1.0, 4.0)]])
    # a plain (not rolling) log: one file, whose job and stage ids start afresh (its stage 2 is not link's)
    plain = {"Event": "SparkListenerApplicationStart", "App Name": "kcure-protect-b1"}
    lines = [plain, _task(1, 0.5, 1.0), *_job(0, "protect: T300", [2], 0, 1_000), _task(2, 0.5, 0.5)]
    (events / "local-3").write_text("\n".join(json.dumps(e) for e in lines) + "\n")

    slowest, apps = B["spark_event_totals"](events)

    link = apps["kcure-link-b1"]
    assert link["tasks"] == 3
    assert link["cpu_seconds"] == pytest.approx(9.0) and link["run_seconds"] == pytest.approx(12.0)
    assert link["off_cpu_share"] == pytest.approx(0.25)  # 3 of 12 s of run time off the CPU
    assert link["gc_seconds"] == pytest.approx(0.6) and link["fetch_wait_seconds"] == pytest.approx(0.3)
    assert (link["input_mb"], link["shuffle_write_mb"], link["spill_mb"], link["output_mb"]) == (10, 4, 1, 3)
    assert apps["kcure-check-b1"]["off_cpu_share"] == pytest.approx(0.75)
    assert set(apps) == {"kcure-link-b1", "kcure-check-b1", "kcure-protect-b1"}  # no status file read as a log
    assert apps["kcure-protect-b1"]["tasks"] == 2

    by = {(s["app"], s["work"]): s for s in slowest}
    t300 = by[("kcure-link-b1", "link: hira_t300 -> T300")]
    assert (t300["jobs"], t300["seconds"], t300["task_cpu_seconds"], t300["task_run_seconds"]) == (1, 20.0, 8.0, 10.0)
    unnamed = by[("kcure-link-b1", "(unnamed)")]
    assert (unnamed["seconds"], unnamed["task_cpu_seconds"]) == (2.0, 1.0)
    protect = by[("kcure-protect-b1", "protect: T300")]
    assert (protect["seconds"], protect["task_cpu_seconds"]) == (1.0, 0.5)  # its stage 1 task is not link's
    assert [s["seconds"] for s in slowest] == [20.0, 5.0, 2.0, 1.0]  # slowest first


def test_a_small_stages_off_cpu_share_comes_from_the_unrounded_sums(tmp_path: Path) -> None:
    start = {"Event": "SparkListenerApplicationStart", "App Name": "kcure-publish-b1"}
    _write_v2(tmp_path, "local-1", [[start, _task(0, 0.14, 0.15)]])
    _, apps = B["spark_event_totals"](tmp_path)
    assert apps["kcure-publish-b1"]["off_cpu_share"] == pytest.approx(1 - 0.14 / 0.15, abs=0.001)  # not 1 - 0.1/0.2


def test_a_stage_reused_by_a_later_job_keeps_the_description_of_the_job_that_ran_it(tmp_path: Path) -> None:
    start = {"Event": "SparkListenerApplicationStart", "App Name": "kcure-link-b1"}
    first, later = _job(0, "link: people", [0], 0, 1_000), _job(1, "link: T200", [0, 1], 500, 2_000)
    _write_v2(tmp_path, "local-1", [[start, first[0], later[0], _task(0, 1.0, 1.0), first[1], later[1]]])
    slowest, _ = B["spark_event_totals"](tmp_path)
    by = {s["work"]: s for s in slowest}
    assert by["link: people"]["task_cpu_seconds"] == 1.0 and by["link: T200"]["task_cpu_seconds"] == 0.0


def test_each_spark_step_gets_its_own_applications_tasks() -> None:
    apps = {name: {"tasks": n} for n, name in enumerate(
        ["kcure-link-bench", "kcure-link-bench-re", "kcure-check-bench", "kcure-provision-kc20261130900",
         "kcure-link-other"], start=1)}  # fmt: skip
    result: dict[str, Any] = {
        "stages": [{"stage": "ingest"}, {"stage": "link"}, {"stage": "check"}],
        "redelivery": {"steps": [{"stage": "link"}, {"stage": "check"}]},
        "provision": {},
    }
    B["attach_spark_tasks"](result, apps, "bench")
    assert [s.get("spark_tasks") for s in result["stages"]] == [None, {"tasks": 1}, {"tasks": 3}]
    assert [s.get("spark_tasks") for s in result["redelivery"]["steps"]] == [{"tasks": 2}, None]
    assert result["provision"]["spark_tasks"] == {"tasks": 4}


def test_the_spark_tasks_table_has_a_row_per_step() -> None:
    tasks = {
        "tasks": 3, "cpu_seconds": 9.0, "run_seconds": 12.0, "off_cpu_share": 0.25, "gc_seconds": 0.8,
        "fetch_wait_seconds": 0.3, "input_mb": 10.0, "shuffle_write_mb": 4.0, "spill_mb": 1.0, "output_mb": 3.0,
    }  # fmt: skip
    lines = B["spark_tasks_table"]([{"stage": "link", "spark_tasks": tasks}])
    assert lines[-1] == "| link | 3 | 9.0 | 12.0 | 25% | 0.8 | 0.3 | 10 | 4 | 1 | 3 |"
    assert len(lines) == 4 and lines[1].startswith("| Spark tasks |")
    assert B["spark_tasks_table"]([]) == []
