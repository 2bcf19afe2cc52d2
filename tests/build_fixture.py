"""The `built` fixture: `kcure build` run as a subprocess over the staged small landing zone, and
helpers that start more builds from its outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TEST_LIBRARY_SECRET, TEST_LINKAGE_SECRET


@dataclass
class Build:
    home: Path
    out: Path  # linked/t1
    pseudo: Path  # pseudonymized/t1
    protected: Path  # protected/t1
    logs: list[Path]
    stdout: str


def copy_build(
    src_home: Path, src: str, dst_home: Path, dst: str, zones: tuple[str, ...] = ("linked", "protected")
) -> None:
    """Build ``dst`` in ``dst_home`` as a copy of build ``src``: its zones, its stage summaries (so the
    stage model sees the stages that produced them as completed) and its check stage's Data Docs."""
    for zone in zones:
        target = dst_home / zone / dst
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(src_home / zone / src, target)
    summaries = dst_home / "reports" / "builds" / dst
    shutil.rmtree(summaries, ignore_errors=True)
    shutil.copytree(src_home / "reports" / "builds" / src, summaries, ignore=shutil.ignore_patterns("*.log"))
    docs = src_home / "reports" / "releases" / src / "data_docs"
    if docs.is_dir():
        shutil.rmtree(dst_home / "reports" / "releases" / dst / "data_docs", ignore_errors=True)
        shutil.copytree(docs, dst_home / "reports" / "releases" / dst / "data_docs")


@pytest.fixture(scope="session")
def built(staged_local, small_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Build:  # type: ignore[no-untyped-def]
    """`kcure build` run as operators run it (a subprocess), over the staged small landing zone:
    pseudonymize, link, protect and check (no release tag, so nothing is published)."""
    local_cfg, _ = staged_local
    conf = tmp_path_factory.mktemp("conf")
    shutil.copytree(REPO / "conf", conf, dirs_exist_ok=True)
    logs = tmp_path_factory.mktemp("build-logs")
    pipeline = yaml.safe_load((conf / "pipeline.yaml").read_text(encoding="utf-8"))
    pipeline["defaults"]["spark"].update(
        {
            "driver_memory": "2g",
            "shuffle_partitions": 2,
            "conf": {
                "spark.eventLog.enabled": "true",
                "spark.eventLog.dir": (logs / "events").as_uri(),
                "spark.ui.enabled": "true",
                "spark.ui.port": "0",
            },
        }
    )
    (logs / "events").mkdir()
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(pipeline), encoding="utf-8")
    env = {
        **os.environ,
        "KCURE_HOME": str(local_cfg.home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
    }
    cmd = [sys.executable, "-m", "kcure.cli", "build", "--build", "t1", "--truth", str(small_landing / "_truth")]
    with (logs / "stdout.log").open("w") as out, (logs / "stderr.log").open("w") as err:
        proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=out, stderr=err, timeout=1200)
    stdout = (logs / "stdout.log").read_text()
    assert proc.returncode == 0, stdout + (logs / "stderr.log").read_text()[-5000:]
    home = local_cfg.home
    return Build(
        home,
        home / "linked" / "t1",
        home / "pseudonymized" / "t1",
        home / "protected" / "t1",
        [logs / "stdout.log", logs / "stderr.log", *sorted((logs / "events").rglob("*"))],
        stdout,
    )


@dataclass
class Published:
    cfg: object  # kcure.core.config.Config with home set to this release's KCURE_HOME
    release: object  # kcure.core.catalog.Release


@pytest.fixture(scope="session")
def local_release(built: Build, cfg, tmp_path_factory: pytest.TempPathFactory) -> Published:  # type: ignore[no-untyped-def]
    """Build t1, checked, published by the stage model as release 'local' (build r1) in a KCURE_HOME of
    its own. The home holds a copy of the staged feeds, so more builds can start from the same input."""
    import dataclasses

    from kcure import pipeline
    from kcure.core import catalog

    home = tmp_path_factory.mktemp("release-home")
    shutil.copytree(built.home / "staging", home / "staging")
    copy_build(built.home, "t1", home, "r1")
    c = dataclasses.replace(cfg, home=home)
    plan = pipeline.plan(c, "r1", "local", start="publish")
    assert plan.stages == ("publish", "report")
    pipeline.run_plan(c, plan)
    return Published(c, catalog.resolve(catalog.open_catalog(c), "local"))
