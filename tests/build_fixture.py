"""The `built` fixture: `kcure build` run as a subprocess over the staged small landing zone, and
helpers that start more builds from its outputs."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
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


def same_files(first: Path, second: Path) -> bool:
    """Every Parquet file under ``first`` is, at the same relative path under ``second``, the same inode:
    a reused output was linked, not written again."""
    files = sorted(first.rglob("*.parquet"))
    twins = [second / f.relative_to(first) for f in files]
    return bool(files) and all(t.exists() and os.path.samefile(f, t) for f, t in zip(files, twins, strict=True))


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


#: what `kcure build --build t1` writes into its home (besides Spark's scratch space under tmp/)
BUILD_PATHS = ("pseudonymized/t1", "linked/t1", "protected/t1", "reports/builds/t1", "reports/releases/t1")


def _staged_versions(home: Path) -> dict[str, str]:
    """Each staged feed-year's current version: ``{"hira_t200/2016": "v-d001-...", ...}``."""
    return {
        str(current.parent.relative_to(home / "staging")): json.loads(current.read_text(encoding="utf-8"))["version"]
        for current in sorted((home / "staging").glob("*/*/CURRENT"))
    }


@contextlib.contextmanager
def _xdist_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path | None]:
    """A folder that every pytest-xdist worker of this run shares, held under an exclusive lock; None
    outside xdist. The first worker to take the lock makes what the folder is for, the others wait
    for it and then copy it (the pattern of pytest-xdist's docs for session fixtures made once)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield None
        return
    shared = tmp_path_factory.getbasetemp().parent / name  # the run's base folder, above each worker's
    shared.mkdir(exist_ok=True)
    with (shared / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, and by the kernel if we die
        yield shared


def _build_t1(home: Path, small_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kcure build --build t1` as a subprocess in ``home``: the folder of its stdout, stderr and
    Spark event logs."""
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
        "KCURE_HOME": str(home),
        "KCURE_CONF": str(conf),
        "KCURE_LINKAGE_SECRET": TEST_LINKAGE_SECRET,
        "KCURE_LIBRARY_SECRET": TEST_LIBRARY_SECRET,
    }
    cmd = [sys.executable, "-m", "kcure.cli", "build", "--build", "t1", "--truth", str(small_landing / "_truth")]
    with (logs / "stdout.log").open("w") as out, (logs / "stderr.log").open("w") as err:
        proc = subprocess.run(cmd, env=env, cwd=REPO, stdout=out, stderr=err, timeout=1200)
    assert proc.returncode == 0, (logs / "stdout.log").read_text() + (logs / "stderr.log").read_text()[-5000:]
    return logs


def _copy_build_paths(src_home: Path, dst_home: Path) -> None:
    """What build t1 wrote (:data:`BUILD_PATHS`), from one home into another."""
    for rel in BUILD_PATHS:
        if (src_home / rel).exists():
            shutil.copytree(src_home / rel, dst_home / rel)


def _made_for(shared: Path, home: Path) -> bool:
    """Whether ``shared`` holds a finished t1 made from the staged versions ``home`` has."""
    if not (shared / "staged.json").is_file():
        return False
    if json.loads((shared / "staged.json").read_text()) != _staged_versions(home):
        warnings.warn("this worker staged other versions than the one that built t1: building again", stacklevel=1)
        return False
    return True


@pytest.fixture(scope="session")
def built(staged_local, small_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Build:  # type: ignore[no-untyped-def]
    """`kcure build` run as operators run it (a subprocess), over the staged small landing zone:
    pseudonymize, link, protect and check (no release tag, so nothing is published).

    Made once per test run: under pytest-xdist, the first worker to need it builds and leaves a copy
    of what the build wrote in a folder the workers share; the other worker copies that into its own
    home, whose staging zone is the same (the small landing zone is generated from a fixed seed and
    staged versions are named by their content), so the build's reuse keys hold there too. A worker
    whose staging differs builds for itself."""
    local_cfg, _ = staged_local
    home = local_cfg.home
    with _xdist_once(tmp_path_factory, "built-t1") as shared:
        if shared is not None and _made_for(shared, home):
            _copy_build_paths(shared / "home", home)
            logs = tmp_path_factory.mktemp("build-logs")
            shutil.copytree(shared / "logs", logs, dirs_exist_ok=True)
        else:
            logs = _build_t1(home, small_landing, tmp_path_factory)
            if shared is not None and not (shared / "staged.json").is_file():
                _copy_build_paths(home, shared / "home")
                shutil.copytree(logs, shared / "logs")
                (shared / "staged.json").write_text(json.dumps(_staged_versions(home)), encoding="utf-8")  # last
    return Build(
        home,
        home / "linked" / "t1",
        home / "pseudonymized" / "t1",
        home / "protected" / "t1",
        [logs / "stdout.log", logs / "stderr.log", *sorted((logs / "events").rglob("*"))],
        (logs / "stdout.log").read_text(),
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
