"""The build's stages, the same for ``kcure build`` and the ``kcure_build_library`` DAG.

    pseudonymize -> link -> gates -> publish -> report

The three Spark stages run in local mode inside the calling process when ``spark.master`` is
``local[...]``. With a cluster URL (``spark://``, ``yarn``, ``k8s://``) they are submitted with
``spark-submit`` (``jobs/<stage>.py``), shipping the ``kcure`` package (``--py-files``) and the
configuration (``--files``). Secrets never go on a command line: the parent resolves them (from the
environment, an owner-only file or an Airflow connection) and hands them to spark-submit as
owner-only ``KCURE_*_SECRET_FILE`` files that are removed when it ends.

Every stage writes its summary to ``reports/builds/<build>/<stage>.json``: the parent reads the
same file whether the stage ran in-process or on a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcure.core import secrets
from kcure.core.config import REPO, Config, load_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

SPARK_STAGES = ("pseudonymize", "link", "gates")
#: which secrets each Spark stage may read: link and gates never see the linkage secret
STAGE_SECRETS = {"pseudonymize": ("linkage", "library"), "link": ("library",), "gates": ()}


BUILD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
STAGES = (*SPARK_STAGES, "publish", "report")


def check_id(value: str, what: str = "build id") -> str:
    """Build ids and release tags name folders and Iceberg tags: letters, digits, '.', '_', '-'."""
    if not BUILD_ID.fullmatch(value or ""):
        raise ValueError(f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting alphanumeric")
    return value


class StageFailed(RuntimeError):
    """A stage ended without its result; the message names the stage and where its log is."""


def repo_root() -> Path:
    return REPO


def jobs_dir() -> Path:
    return Path(os.environ.get("KCURE_JOBS_DIR") or repo_root() / "jobs")


def is_cluster(cfg: Config) -> bool:
    return not str(cfg.spark.get("master", "local[2]")).startswith("local")


def summary_path(cfg: Config, build: str, stage: str) -> Path:
    return cfg.local_path("reports") / "builds" / build / f"{stage}.json"


def read_summary(cfg: Config, build: str, stage: str) -> dict[str, Any]:
    p = summary_path(cfg, build, stage)
    if not p.exists():
        raise StageFailed(f"{stage} of build {build} left no summary at {p}")
    return dict(json.loads(p.read_text(encoding="utf-8")))


def _write_summary(cfg: Config, build: str, stage: str, summary: dict[str, Any]) -> None:
    p = summary_path(cfg, build, stage)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def _min_bytes(cfg: Config) -> int:
    return int(cfg.privacy["secrets"]["min_bytes"])


# --- the stages' bodies (they run wherever the Spark driver runs) -----------------------------------


def _pseudonymize(spark: SparkSession, cfg: Config, build: str, truth: str | None) -> dict[str, Any]:
    from kcure.stages import pseudonymize

    keys = {k: secrets.load(k, min_bytes=_min_bytes(cfg)) for k in STAGE_SECRETS["pseudonymize"]}
    from kcure.release import staged_inputs

    inputs = staged_inputs(cfg)  # what this build reads; the manifest records it, not staging at publish time
    result = pseudonymize.run(spark, cfg, keys, build)
    return {"feeds": list(result.feeds), "out": str(result.out), "inputs": inputs}


def _link(spark: SparkSession, cfg: Config, build: str, truth: str | None) -> dict[str, Any]:
    from kcure.stages.link import linker as link
    from kcure.stages.link import truth as quality

    key = secrets.load("library", min_bytes=_min_bytes(cfg))
    result = link.run(spark, cfg, key, build)
    out: dict[str, Any] = {
        "out": str(result.out),
        "tables": result.tables,
        "report": result.report,
        "staged_rows": sum(int(r["staged"]) for r in result.report),
    }
    if truth:
        q = quality.evaluate(spark, result.out, Path(truth))
        (result.out / "_linkage_quality.json").write_text(json.dumps(q, indent=2, default=str) + "\n", encoding="utf-8")
        out["quality"] = q
    return out


def _gates(spark: SparkSession, cfg: Config, build: str, truth: str | None) -> dict[str, Any]:
    from kcure.stages import check as gates

    report = gates.run(spark, cfg, build)
    # the gate report's own "seconds" (per phase) is kept as "phases": "seconds" is the stage's wall time
    return {**report.to_dict(), "phases": dict(report.seconds), "failures": [c.message() for c in report.failures]}


BODIES = {"pseudonymize": _pseudonymize, "link": _link, "gates": _gates}


def job_main(stage: str, argv: list[str] | None = None) -> int:
    """The entry point of ``jobs/<stage>.py`` under spark-submit (or ``python jobs/<stage>.py``)."""
    import argparse

    from kcure.core.spark import build_session

    ap = argparse.ArgumentParser(prog=f"jobs/{stage}.py", description=f"the {stage} stage of a library build")
    ap.add_argument("--build", required=True, help="build id, for example 2024.1")
    ap.add_argument("--truth", help="a synthetic population's _truth/ folder (link: adds precision and recall)")
    args = ap.parse_args(argv)
    cfg = load_config()
    for kind in STAGE_SECRETS[stage]:  # refuse before touching any data
        secrets.load(kind, min_bytes=_min_bytes(cfg))
    spark = build_session(cfg.spark, app_name=f"kcure-{stage}-{args.build}")
    try:
        t0 = time.perf_counter()
        summary = BODIES[stage](spark, cfg, args.build, args.truth)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        summary["master"] = spark.sparkContext.master
        _write_summary(cfg, args.build, stage, summary)
    finally:
        spark.stop()
    return 0


# --- running a Spark stage: in-process (local) or spark-submit (cluster) ----------------------------


def run_spark_stage(
    cfg: Config, stage: str, build: str, *, truth: str | None = None, spark: SparkSession | None = None
) -> dict[str, Any]:
    """Run one Spark stage and return its summary (also in ``reports/builds/<build>/<stage>.json``)."""
    if stage not in BODIES:
        raise ValueError(f"unknown Spark stage {stage!r}; stages: {', '.join(SPARK_STAGES)}")
    check_id(build)
    for later in STAGES[STAGES.index(stage) :]:  # a re-run stage invalidates what came after it
        summary_path(cfg, build, later).unlink(missing_ok=True)
    if is_cluster(cfg):
        submit(cfg, stage, build, truth=truth)
        return read_summary(cfg, build, stage)
    from kcure.core.spark import build_session

    for kind in STAGE_SECRETS[stage]:
        secrets.load(kind, min_bytes=_min_bytes(cfg))
    own = spark is None
    session = spark or build_session(cfg.spark, app_name=f"kcure-{stage}-{build}")
    try:
        t0 = time.perf_counter()
        summary = BODIES[stage](session, cfg, build, truth)
        summary["seconds"] = round(time.perf_counter() - t0, 2)
        summary["master"] = session.sparkContext.master
    finally:
        if own:
            session.stop()
    _write_summary(cfg, build, stage, summary)
    return summary


def package_zip(cfg: Config) -> Path:
    """The ``kcure`` package as a zip for ``--py-files`` (rebuilt when any source file is newer)."""
    src = Path(__file__).resolve().parent
    out = cfg.home / "tmp" / "kcure-py-files.zip"
    newest = max(p.stat().st_mtime for p in src.rglob("*.py"))
    if out.exists() and out.stat().st_mtime >= newest:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=".kcure-py-files-", suffix=".zip")  # concurrent builds
    with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*.py")):
            z.write(p, Path("kcure") / p.relative_to(src))
    os.replace(name, out)
    return out


def spark_submit_command(
    cfg: Config, stage: str, build: str, properties: Path, *, truth: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command line for a stage, and the Spark properties to write to ``properties``.

    Spark settings go in an owner-only properties file, not on the command line, where ``ps`` shows
    them (some, such as object-store keys, are credentials). The command holds no secret.
    """
    from pyspark.find_spark_home import _find_spark_home

    from kcure.core.spark import session_conf

    spark_cfg = cfg.spark
    deploy_mode = str(spark_cfg.get("deploy_mode", "client"))
    cmd = [
        str(Path(_find_spark_home()) / "bin" / "spark-submit"),
        "--master",
        str(spark_cfg["master"]),
        "--deploy-mode",
        deploy_mode,
        "--name",
        f"kcure-{stage}-{build}",
        "--py-files",
        str(package_zip(cfg)),
        "--files",
        ",".join(str(cfg.conf_dir / name) for name in sorted(cfg.raw)),
        "--properties-file",
        str(properties),
    ]
    conf = session_conf(spark_cfg)
    # client mode: the driver runs here, with this interpreter (the one that has kcure's dependencies)
    conf.setdefault("spark.pyspark.driver.python", sys.executable)
    if deploy_mode == "cluster":  # the driver runs remotely: it reads the shipped configuration
        conf["spark.yarn.appMasterEnv.KCURE_CONF"] = "."
        conf["spark.kubernetes.driverEnv.KCURE_CONF"] = "."
    cmd += [str(jobs_dir() / f"{stage}.py"), "--build", build]
    if truth and stage == "link":
        cmd += ["--truth", str(truth)]
    return cmd, conf


def _properties(conf: dict[str, str]) -> bytes:
    """Java properties text (backslashes escaped; Spark reads it as ISO-8859-1 escapes otherwise)."""
    return "".join(f"{k} {str(v).replace(chr(92), chr(92) * 2)}\n" for k, v in conf.items()).encode()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def submit(cfg: Config, stage: str, build: str, *, truth: str | None = None) -> None:
    """Run a stage with spark-submit against the configured cluster; its log goes to the build's reports."""
    from kcure.core.suites import expectations_dir

    log = summary_path(cfg, build, stage).with_suffix(".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    # nothing secret-bearing passes through: the stage gets back only the files of its own secrets
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("KCURE_") and "SECRET" in k) and not k.startswith("AIRFLOW_CONN_KCURE_")
    }
    env.update(
        {
            "KCURE_HOME": str(cfg.home),
            "KCURE_CONF": str(cfg.conf_dir),
            "KCURE_ENV": cfg.environment,
            # the driver imports kcure from the shipped zip: name the folders it reads explicitly
            "KCURE_EXPECTATIONS": str(expectations_dir()),
            "KCURE_JOBS_DIR": str(jobs_dir()),
            "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable),
            "PYSPARK_DRIVER_PYTHON": env.get("PYSPARK_DRIVER_PYTHON", sys.executable),
        }
    )
    shm = Path("/dev/shm")  # memory-backed where available: nothing reaches a disk
    secret_dir = Path(tempfile.mkdtemp(prefix="kcure-secrets-", dir=shm if shm.is_dir() else None))  # 0700
    try:
        cmd, conf = spark_submit_command(cfg, stage, build, secret_dir / "spark.properties", truth=truth)
        _write_private(secret_dir / "spark.properties", _properties(conf))
        for kind in STAGE_SECRETS[stage]:
            value = secrets.load(kind, min_bytes=_min_bytes(cfg))
            _write_private(secret_dir / kind, value.raw())
            env[f"{secrets.NAMES[kind]}_FILE"] = str(secret_dir / kind)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
    if proc.returncode != 0:  # the log may quote Spark errors: point to it (owner-only), never copy it
        raise StageFailed(
            f"{stage} of build {build} failed on {cfg.spark['master']} (exit {proc.returncode}); "
            f"see the spark-submit log {log}"
        )


# --- the stages after Spark ------------------------------------------------------------------------


def publish(cfg: Config, build: str, tag: str) -> dict[str, Any]:
    """Publish the build as ``tag`` if, and only if, its gates passed."""
    from kcure.stages import publish as publishing

    check_id(build)
    check_id(tag, "release tag")
    gates = read_summary(cfg, build, "gates")
    if not gates.get("success"):
        raise StageFailed(
            f"release gates failed for build {build}; release {tag} was NOT published:\n"
            + "\n".join(gates.get("failures") or [])
        )
    t0 = time.perf_counter()
    r = publishing.publish(cfg, build, tag, publishing.manifest_for(cfg, build))
    summary = {
        "release": r.tag,
        "build": r.build,
        "published_at": r.created_at.isoformat(),
        "row_counts": r.manifest["row_counts"],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    _write_summary(cfg, build, "publish", summary)
    return summary


def report(cfg: Config, build: str, tag: str) -> dict[str, Any]:
    from kcure.access.report import render

    summary = {"release": tag, "report": str(render(cfg, tag))}
    _write_summary(cfg, build, "report", summary)
    return summary
