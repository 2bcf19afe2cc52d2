"""Running a Spark stage on a cluster: ``spark-submit jobs/<stage>.py`` with the package and the configuration.

With a cluster URL in ``conf/pipeline.yaml`` ``spark.master`` (``spark://``, ``yarn``, ``k8s://``)
the stage model (:mod:`kcure.pipeline`) submits each Spark stage: the ``kcure`` package goes as
``--py-files``, the configuration as ``--files``. Neither the command line nor the child's
environment carries a secret or a Spark setting: the settings go in an owner-only
``--properties-file``, and the stage's own secrets (and only those) go as owner-only
``KCURE_*_SECRET_FILE`` files in memory-backed ``/dev/shm``, removed when spark-submit ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from kcure.core import secrets as secret_store
from kcure.core.config import REPO, Config
from kcure.core.zones import write_private

if TYPE_CHECKING:
    from kcure.core.secrets import Secret


def jobs_dir() -> Path:
    """The spark-submit entry points (``KCURE_JOBS_DIR`` in the image, the repository's ``jobs/`` otherwise)."""
    return Path(os.environ.get("KCURE_JOBS_DIR") or REPO / "jobs")


def is_cluster(cfg: Config) -> bool:
    return not str(cfg.spark.get("master", "local[2]")).startswith("local")


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
    cfg: Config, stage: str, args: list[str], properties: Path
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
        f"kcure-{stage}-{args[args.index('--build') + 1]}",
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
    return [*cmd, str(jobs_dir() / f"{stage}.py"), *args], conf


def _properties(conf: dict[str, str]) -> bytes:
    """Java properties text (backslashes escaped; Spark reads it as ISO-8859-1 escapes otherwise)."""
    return "".join(f"{k} {str(v).replace(chr(92), chr(92) * 2)}\n" for k, v in conf.items()).encode()


def submit(cfg: Config, stage: str, args: list[str], secrets: dict[str, Secret], log: Path) -> int:
    """Run ``jobs/<stage>.py ARGS`` with spark-submit against the configured cluster; its exit status.

    The child gets back only ``secrets`` (the stage's own), as files; its output goes to ``log``
    (owner-only: it may quote Spark errors).
    """
    from kcure.core.suites import expectations_dir

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
        cmd, conf = spark_submit_command(cfg, stage, args, secret_dir / "spark.properties")
        write_private(secret_dir / "spark.properties", _properties(conf))
        for kind, value in secrets.items():
            write_private(secret_dir / kind, value.raw())
            env[f"{secret_store.NAMES[kind]}_FILE"] = str(secret_dir / kind)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
    return proc.returncode
