"""A stage can run again, twice and after a SIGKILL halfway through its writes, with identical results:
it clears its own zone and recomputes it from an input no stage edits, so there is nothing to swap."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from kcure.core.zones import PRIVACY, read_json
from tests.build_fixture import Build, copy_build
from tests.conftest import REPO

pytestmark = [pytest.mark.spark, pytest.mark.integration, pytest.mark.slow]


def _contents(zone: Path) -> dict[str, object]:
    """Every table's rows (sorted) and the privacy result: what the stage's output says, not how it is stored."""
    out: dict[str, object] = {PRIVACY: read_json(zone / PRIVACY)}
    for table in sorted(p for p in zone.iterdir() if p.is_dir()):
        t = pq.read_table(table)
        out[table.name] = sorted(map(repr, t.to_pylist()))
    return out


def _files(zone: Path) -> dict[str, str]:
    return {
        str(p.relative_to(zone)): hashlib.sha256(p.read_bytes()).hexdigest() for p in zone.rglob("*") if p.is_file()
    }


def _no_reuse(tmp: Path) -> Path:
    """The configuration with ``builds.reuse: false``: every run here must really write its tables
    (with reuse, protect would link t1's, and there would be no write to kill)."""
    conf = tmp / "conf"
    shutil.copytree(REPO / "conf", conf)
    pipeline_yaml = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline_yaml["defaults"]["builds"]["reuse"] = False
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline_yaml), encoding="utf-8")
    return conf


def _protect(home: Path, conf: Path, *, kill_when: Path | None = None) -> int:
    env = {**os.environ, "KCURE_HOME": str(home), "KCURE_CONF": str(conf)}
    cmd = [sys.executable, str(REPO / "jobs" / "protect.py"), "--build", "rerun"]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if kill_when is not None:
        deadline = time.monotonic() + 600
        while proc.poll() is None and not kill_when.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its JVM, mid-write
    _, err = proc.communicate(timeout=900)
    assert kill_when is not None or proc.returncode == 0, err.decode()[-3000:]
    return proc.returncode


def test_protect_runs_again_and_after_a_kill_with_identical_results_and_no_swap_folders(  # type: ignore[no-untyped-def]
    spark, built: Build, tmp_path: Path
) -> None:
    import dataclasses

    from kcure import pipeline
    from kcure.core.config import load_config

    home = built.home
    conf = _no_reuse(tmp_path)
    c = dataclasses.replace(load_config(conf), home=home)

    def protect_here() -> None:  # the stage model in this process (the session of the tests)
        pipeline.run_stage(c, pipeline.plan(c, "rerun", start="protect", stop="protect"), "protect", spark=spark)

    copy_build(home, "t1", home, "rerun", zones=("linked",))
    linked = home / "linked" / "rerun"
    out = home / "protected" / "rerun"
    summary = home / "reports" / "builds" / "rerun" / "protect.json"
    link_files = _files(linked)

    _protect(home, conf)  # as spark-submit runs it: jobs/protect.py in a process of its own
    first = _contents(out)
    assert first[PRIVACY]["costs"], "the fixture must need recoding for this test to mean much"  # type: ignore[index]
    protect_here()
    assert _contents(out) == first

    # killed while Spark writes the recoded RGST: no summary, so the next stage refuses to start
    code = _protect(home, conf, kill_when=out / "RGST" / "_temporary")
    assert code == -signal.SIGKILL
    assert not summary.exists()
    with pytest.raises(pipeline.StageFailed, match="needs the output of protect"):
        pipeline.run_stage(c, pipeline.plan(c, "rerun", start="check"), "check")

    protect_here()
    assert _contents(out) == first
    assert summary.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([PRIVACY, *c.library.tables])  # no swap, no temp
    assert _files(linked) == link_files  # link's output was never touched
