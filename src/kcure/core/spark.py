"""The one place a SparkSession is built. Jobs take the session as an argument; they never build it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

#: Spark's redaction: configuration values whose keys match are hidden in the UI and event logs,
#: and string literals matching the SQL regex are hidden in query plans (EXPLAIN, the SQL tab).
REDACTION = {
    "spark.redaction.regex": "(?i)secret|password|token|credential|access.?key|kcure_.*secret",
    "spark.sql.redaction.options.regex": "(?i)secret|password|token|url|key",
}


def session_conf(spark_cfg: dict[str, Any], overrides: dict[str, str] | None = None) -> dict[str, str]:
    conf = {
        "spark.sql.shuffle.partitions": str(spark_cfg.get("shuffle_partitions", 8)),
        "spark.driver.memory": str(spark_cfg.get("driver_memory", "4g")),
        "spark.sql.session.timeZone": "Asia/Seoul",
        "spark.sql.ansi.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # Python workers (executors) run this interpreter, not whatever `python3` is first on PATH;
        # on a cluster whose nodes keep Python elsewhere, set spark.pyspark.python in conf/
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        # every file and folder Spark writes (outputs, event logs) is its owner's alone
        "spark.hadoop.fs.permissions.umask-mode": "077",
        **REDACTION,
    }
    if str(spark_cfg.get("master", "local")).startswith("local"):
        # local mode talks to itself only: bind the driver and the UI to loopback
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        if spark_cfg.get("local_dir"):  # shuffle and spill files: in the owner-only tmp/ of KCURE_HOME
            conf["spark.local.dir"] = str(spark_cfg["local_dir"])
    conf.update(spark_cfg.get("conf", {}) or {})
    conf.update(overrides or {})
    return conf


def _local_path(where: str) -> Path | None:
    """A local folder named by a Spark setting (a path or a file: URL), or None."""
    from urllib.parse import urlparse

    if not where or ("://" in where and not where.startswith("file:")):
        return None
    return Path(urlparse(where).path if where.startswith("file:") else where)


def build_session(
    spark_cfg: dict[str, Any], *, app_name: str | None = None, overrides: dict[str, str] | None = None
) -> SparkSession:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(str(spark_cfg.get("master", "local[2]"))).appName(
        app_name or str(spark_cfg.get("app_name", "kcure"))
    )
    conf = session_conf(spark_cfg, overrides)
    for key in ("spark.local.dir", "spark.eventLog.dir"):  # made owner-only before the JVM writes there
        local = _local_path(conf.get(key, ""))
        if local is not None:
            local.mkdir(mode=0o700, parents=True, exist_ok=True)
    for k, v in conf.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
