"""The one place a SparkSession is built. Jobs take the session as an argument; they never build it."""

from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from pyspark.sql import DataFrame, SparkSession

    from kcure.core.config import Config

#: Spark's redaction: configuration values whose keys match are hidden in the UI and event logs,
#: and string literals matching the SQL regex are hidden in query plans (EXPLAIN, the SQL tab).
REDACTION = {
    "spark.redaction.regex": "(?i)secret|password|token|credential|access.?key|kcure_.*secret",
    "spark.sql.redaction.options.regex": "(?i)secret|password|token|url|key",
}


#: The driver JVM's compilers for a small input: C1 only. A small build is mostly the JVM warming up,
#: and C2's compilations (on the same two cores) cost more than the faster code they make returns.
#: C1 alone gets the JVM's non-tiered code cache, 48 MB, which a link stage's generated code filled:
#: the JVM then disables its compiler and runs everything after in the interpreter. The tiered
#: default (240 MB) is kept.
QUICK_START = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"


def quick_start(spark_cfg: dict[str, Any], input_mb: float | None) -> bool:
    """Whether a local session over ``input_mb`` of input starts its JVM with :data:`QUICK_START`:
    ``quick_start_below_mb`` in the Spark configuration (0 or absent: never)."""
    limit = float(spark_cfg.get("quick_start_below_mb") or 0)
    local = str(spark_cfg.get("master", "local")).startswith("local")
    return local and input_mb is not None and input_mb < limit


def local_cores(spark_cfg: dict[str, Any]) -> int:
    """The task threads of a local master (``local``: 1, ``local[N]``: N, ``local[*]``: every CPU this
    process may run on); 0 for a cluster's master."""
    master = str(spark_cfg.get("master", "local[2]"))
    if master == "local":
        return 1
    m = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", master)
    if m is None:
        return 0
    return len(os.sched_getaffinity(0)) if m.group(1) == "*" else int(m.group(1))


def concurrent_jobs(spark_cfg: dict[str, Any], input_mb: float | None) -> int:
    """How many feeds (or tables) a stage over ``input_mb`` of input works on at once: as many as a
    local session has cores when the input is below ``concurrent_below_mb``, else one.

    A small stage is mostly Spark planning, compiling and scheduling many small queries, one after
    the other, on one core at a time; two feeds' queries at once keep both cores busy. A large input
    works one feed at a time: its tasks fill the cores, and two feeds' sorts would share the heap."""
    limit = float(spark_cfg.get("concurrent_below_mb") or 0)
    if input_mb is None or input_mb >= limit:
        return 1
    return max(local_cores(spark_cfg), 1)


R = TypeVar("R")


def run_concurrently(tasks: Sequence[Callable[[], R]], threads: int) -> list[R]:
    """Each task's result, in order, with up to ``threads`` running at once (each in a thread of its
    own, whose Spark jobs carry that thread's job description). As soon as one task fails, no
    further task starts; its error is raised once the tasks already running have ended."""
    if threads <= 1 or len(tasks) <= 1:
        return [t() for t in tasks]
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=min(threads, len(tasks)), thread_name_prefix="kcure-stage") as pool:
        futures = [pool.submit(t) for t in tasks]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failure (or an interrupt while waiting) starts no further task
            for f in futures:
                f.cancel()
        errors = [e for f in futures if f in done and not f.cancelled() and (e := f.exception()) is not None]
        if errors:
            raise errors[0]
        return [f.result() for f in futures]


def files_mb(files: Iterable[Path | str]) -> float:
    """The size of ``files`` in MB, from their metadata: no read."""
    return sum(os.path.getsize(f) for f in files) / 2**20


def folder_mb(path: Path) -> float:
    """The size of the files under ``path`` (0 when it does not exist)."""
    return files_mb(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0.0


def staged_mb(cfg: Config) -> float | None:
    """The size of the staging zone, a build's input: it sizes the Spark sessions of its stages.
    ``None`` when staging is not a local folder (HDFS, S3: a cluster's, which is never sized here)."""
    where = cfg.path("staging")
    return None if "://" in where else folder_mb(Path(where))


def session_conf(
    spark_cfg: dict[str, Any], overrides: dict[str, str] | None = None, *, input_mb: float | None = None
) -> dict[str, str]:
    """The Spark settings of a session; ``input_mb``: the size of what it will read (see :func:`quick_start`)."""
    conf = {
        "spark.sql.shuffle.partitions": str(spark_cfg.get("shuffle_partitions", 8)),
        "spark.driver.memory": str(spark_cfg.get("driver_memory", "4g")),
        "spark.sql.session.timeZone": "Asia/Seoul",
        "spark.sql.ansi.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        # no web UI unless asked for (spark.ui: true): it listens for anyone on the machine while a stage
        # runs, and its start costs every stage a second; the event logs and Airflow's task logs remain
        "spark.ui.enabled": "true" if spark_cfg.get("ui", False) else "false",
        # Python workers (executors) run this interpreter, not whatever `python3` is first on PATH;
        # on a cluster whose nodes keep Python elsewhere, set spark.pyspark.python in conf/
        "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
        # every file and folder Spark writes (outputs, event logs) is its owner's alone
        "spark.hadoop.fs.permissions.umask-mode": "077",
        **REDACTION,
    }
    local = str(spark_cfg.get("master", "local")).startswith("local")
    if local:
        # local mode talks to itself only: bind the driver and the UI to loopback
        conf["spark.driver.host"] = "127.0.0.1"
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        if spark_cfg.get("local_dir"):  # shuffle and spill files: in the owner-only tmp/ of KCURE_HOME
            conf["spark.local.dir"] = str(spark_cfg["local_dir"])
    conf.update(spark_cfg.get("conf", {}) or {})
    conf.update(overrides or {})
    options = [conf.get("spark.driver.extraJavaOptions", "")]
    if quick_start(spark_cfg, input_mb):
        options.append(QUICK_START)
    if local and spark_cfg.get("class_archive", True):
        from kcure.core import classdata

        options.append(classdata.java_options())  # '' when there is no trusted archive for this JVM
    java = " ".join(o for o in options if o)
    if java:
        conf["spark.driver.extraJavaOptions"] = java
    return conf


def _local_path(where: str) -> Path | None:
    """A local folder named by a Spark setting (a path or a file: URL), or None."""
    from urllib.parse import urlparse

    if not where or ("://" in where and not where.startswith("file:")):
        return None
    return Path(urlparse(where).path if where.startswith("file:") else where)


def _preload(modules: tuple[str, ...]) -> threading.Thread | None:
    """Import ``modules`` in a thread while the JVM starts; the caller joins it before going on.

    Spark's JVM takes seconds to start, and the driver waits for it with the GIL released. Great
    Expectations takes as long again to import (it pulls in scipy, altair, SQLAlchemy and pyspark.ml),
    so a stage that needs it imports it meanwhile. An import that fails here is left for the
    stage's own import to report.
    """
    if not modules:
        return None
    import importlib

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:
                continue

    thread = threading.Thread(target=load, name="kcure-preload", daemon=True)
    thread.start()
    return thread


def active_session() -> SparkSession | None:
    """The session already running in this process, if any. A caller that finds one uses it and
    leaves it running: stopping a session it did not start would stop its owner's (one SparkContext
    per process), and a new session would silently take the running one's settings anyway."""
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def build_session(
    spark_cfg: dict[str, Any],
    *,
    app_name: str | None = None,
    overrides: dict[str, str] | None = None,
    preload: tuple[str, ...] = (),
    input_mb: float | None = None,
) -> SparkSession:
    """The session for ``spark_cfg``; ``preload``: modules to import while its JVM starts; ``input_mb``:
    the size of the data it will read, which picks the JVM's compilers (:func:`quick_start`)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(str(spark_cfg.get("master", "local[2]"))).appName(
        app_name or str(spark_cfg.get("app_name", "kcure"))
    )
    conf = session_conf(spark_cfg, overrides, input_mb=input_mb)
    for key in ("spark.local.dir", "spark.eventLog.dir"):  # made owner-only before the JVM writes there
        local = _local_path(conf.get(key, ""))
        if local is not None:
            local.mkdir(mode=0o700, parents=True, exist_ok=True)
    for k, v in conf.items():
        builder = builder.config(k, v)
    loading = _preload(preload)
    try:
        session = builder.getOrCreate()
    finally:
        if loading is not None:  # nothing imports concurrently with the stage's own code
            loading.join()
    session.sparkContext.setLogLevel("WARN")
    return session


def local_frame(spark: SparkSession, rows: Iterable[Sequence[Any]], schema: str) -> DataFrame:
    """A DataFrame of ``rows`` made on the driver (``schema``: a DDL string such as ``"SN_KEY string"``).

    Through Arrow: Spark keeps the rows in a ``LocalRelation`` (above
    ``spark.sql.execution.arrow.localRelationThreshold``, an RDD of Arrow batches) and reads them in
    the JVM. A value of the wrong type is refused, as ``createDataFrame`` refuses it.
    ``spark.createDataFrame`` of a Python list instead ships pickled rows that Python worker
    processes unpickle in every task that reads them: a stage that made one such frame started a
    Python daemon and its workers for it, and a cohort of people went through pickle row by row."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType, _parse_datatype_string

    struct = _parse_datatype_string(schema)
    if not isinstance(struct, StructType):
        raise ValueError(f"not a row schema: {schema!r}")
    arrow = to_arrow_schema(struct)
    rows = list(rows)
    if any(not isinstance(r, tuple | list) for r in rows):
        raise TypeError("local_frame takes rows as tuples or lists, in the schema's column order")
    columns = list(zip(*rows, strict=True)) or [() for _ in arrow]
    # each column as its values are, then cast (safely: 2015.5 never becomes an int 2015)
    arrays = [pa.array(c).cast(f.type) for c, f in zip(columns, arrow, strict=True)]
    return spark.createDataFrame(pa.Table.from_arrays(arrays, schema=arrow))


def _data_files(root: Path) -> list[Path]:
    """The Parquet data files under ``root``, sorted (Spark's and pyarrow's hidden files skipped)."""
    if root.is_file():
        return [root]
    return sorted(f for f in root.rglob("*.parquet") if not _hidden(f.relative_to(root)))


def _spark_fields(arrow: Any) -> list[Any]:
    """A file's columns as Spark reads them: Spark's own record of the schema when the file holds
    exactly the columns it names, else the file's Arrow schema converted; every field nullable."""
    import json

    from pyspark.sql.pandas.types import from_arrow_schema
    from pyspark.sql.types import StructField, StructType

    spark_json = (arrow.metadata or {}).get(b"org.apache.spark.sql.parquet.row.metadata")
    schema = StructType.fromJson(json.loads(spark_json)) if spark_json else None
    if schema is None or schema.fieldNames() != arrow.names:  # a file rewritten after Spark: its own columns
        schema = from_arrow_schema(arrow.remove_metadata())
    return [StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields]


def parquet_schema(root: Path) -> Any:
    """The Spark schema of the Parquet files under ``root``, read from their footers on the driver;
    ``None`` when there is no data file (the caller lets Spark decide).

    Spark infers a schema with a job of its own (a listing and a footer read on the executors) for
    every ``spark.read.parquet``: at a second each, a build of ninety feed-years spent most of a
    small build's time there. Files Spark wrote carry Spark's own schema in their footer; others,
    and any whose recorded schema names other columns than the file holds (a file rewritten by
    another tool keeps the old record), are converted from their Arrow schema.

    Every file's footer is read, and the schema is the union of their columns in order of first
    appearance (Spark's ``mergeSchema``): a column that one file alone holds is read, so the
    gates see it, where Spark's own inference would read one footer and leave the column unseen
    in a file the release then serves. ``k=v`` folders become partition columns (integer values
    as ``int``, as Spark's partition type inference makes them).
    """
    import pyarrow.parquet as pq
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    files = _data_files(root)
    if not files:
        return None
    first = pq.read_schema(files[0])
    fields = _spark_fields(first)
    for file in files[1:]:
        arrow = pq.read_schema(file)
        if arrow.names != first.names:
            known = {f.name for f in fields}
            fields += [f for f in _spark_fields(arrow) if f.name not in known]
    for part in files[0].relative_to(root).parts[:-1] if root.is_dir() else ():
        name, _, value = part.partition("=")
        if not value:
            continue
        digits = value.lstrip("-").isdigit()
        kind = (IntegerType() if -(2**31) <= int(value) < 2**31 else LongType()) if digits else StringType()
        fields = [f for f in fields if f.name != name] + [StructField(name, kind, True)]
    return StructType(fields)


def read_parquet(spark: SparkSession, path: Path) -> DataFrame:
    """``spark.read.parquet(path)`` with the schema read from a footer here (:func:`parquet_schema`),
    so no Spark job runs before the caller's own. Local paths only; others go to Spark as they are."""
    schema = parquet_schema(path) if path.exists() else None
    reader = spark.read if schema is None else spark.read.schema(schema)
    return reader.parquet(str(path))


def parquet_rows(path: Path) -> int:
    """The rows of the Parquet data files under ``path``, summed from their footers: no Spark job."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else [f for f in path.rglob("*.parquet") if not _hidden(f.relative_to(path))]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _hidden(rel: Path) -> bool:
    return any(part.startswith((".", "_")) and "=" not in part for part in rel.parts)
