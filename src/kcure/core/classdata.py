"""A class-data sharing archive of Spark's JVM: the classes a stage loads, parsed and verified once.

A local Spark stage starts a JVM that loads and verifies some 9,000 classes from Spark's jars
before its first job, and each stage, being its own process (as an Airflow task is), pays it
again: about 6 s of a 10 s start on the 2-core development machine. Java's class-data sharing
(a dynamic CDS archive, JDK 13+) maps those classes from one file instead: the same start took
3.5 s with it.

``kcure spark-archive`` (run by ``make install`` and the Dockerfile) makes the archive: a JVM runs a
small Spark workload that touches what the stages use (Parquet, joins, windows, SHA-2, Arrow) and
writes the classes it loaded as it exits. The archive is then tried by a second JVM, and only
then moved into place, because a JVM given a damaged archive crashes. A session uses it
(:func:`java_options`) when it exists for this very JVM and these jars (the file name carries
their digest, and the JVM checks again and ignores an archive it does not match), and only when
it cannot have been planted: the archive and its folder must belong to this user or to root and
be writable by nobody else, as the jars themselves are.

The archive holds class metadata from Spark's public jars and nothing of any data: the workload
runs on made-up constants, and a dynamic archive stores no heap objects.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

#: where archives live: the environment's own share/ folder (beside the jars they are made from)
#: unless KCURE_CLASS_ARCHIVE_DIR names another, for example in an image whose site is read-only
ENV_DIR = "KCURE_CLASS_ARCHIVE_DIR"


def archive_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path(sys.prefix) / "share" / "kcure")


def _java() -> Path | None:
    """The java that pyspark's launcher runs: $JAVA_HOME/bin/java, else the first on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def _jars() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def archive_path() -> Path | None:
    """The archive's path for this JVM and these jars (whether or not it exists); None without java."""
    java = _java()
    if java is None:
        return None
    h = hashlib.sha256()
    for f in (java, *sorted(_jars().glob("*.jar"))):
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return archive_dir() / f"spark-{h.hexdigest()[:24]}.jsa"


def _trusted(path: Path) -> bool:
    """Owned by this user or root, and writable by no one else: the file and its folder."""
    for p in (path, path.parent):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode) or st.st_uid not in (0, os.getuid()) or st.st_mode & 0o022:
            return False
    return True


def usable() -> Path | None:
    """The archive to start a JVM with, if there is a trusted one for this JVM and these jars."""
    try:
        path = archive_path()
        return path if path is not None and path.is_file() and _trusted(path) else None
    except OSError:
        return None


def java_options() -> str:
    """The driver JVM option that maps the archive, or '' when there is none to use."""
    path = usable()
    return f"-XX:SharedArchiveFile={path}" if path is not None else ""


def _workload(option: str) -> None:
    """A local session started with ``option``: to make the archive, it runs what the stages run, on
    made-up rows; to try one, a single query."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from kcure.core.spark import build_session

    spark_cfg = {"master": "local[2]", "shuffle_partitions": 2, "class_archive": False}
    spark = build_session(
        spark_cfg, app_name="kcure-class-archive", overrides={"spark.driver.extraJavaOptions": option}
    )
    if not option.startswith("-XX:ArchiveClassesAtExit="):
        spark.range(10).selectExpr("sum(id)").collect()
        spark.stop()
        return
    rows = [(i, f"k{i % 7}", f"2015{(i % 12) + 1:02d}01", float(i) / 3) for i in range(200)]
    df = spark.createDataFrame(rows, "id long, key string, day string, amount double")
    key = F.sha2(F.concat(F.unhex(F.sha2(F.lit("made-up"), 256)), F.col("key").cast("binary")), 256)
    df = df.withColumn("hk", key).withColumn("d", F.to_date("day", "yyyyMMdd"))
    df = df.withColumn("rank", F.row_number().over(Window.partitionBy("key").orderBy(F.col("d").desc())))
    df = df.withColumn("ok", F.col("key").rlike("^k[0-9]$") & F.col("day").substr(1, 4).cast("int").isNotNull())
    with tempfile.TemporaryDirectory(prefix="kcure-class-archive-") as tmp:
        df.write.mode("overwrite").partitionBy("rank").parquet(f"{tmp}/t")
        back = spark.read.parquet(f"{tmp}/t")
        small = back.groupBy("key").agg(F.count("*").alias("n"), F.max("amount").alias("m"))
        joined = back.join(F.broadcast(small), "key").join(back.select("id", "hk"), "id", "left_anti")
        joined.union(joined).distinct().count()
        back.join(small.withColumnRenamed("key", "k2"), F.col("key") == F.col("k2"), "left").collect()
        spark.sql("select 1 as x").collect()
        back.select("id", "amount").toPandas()
    spark.stop()


class Busy(RuntimeError):
    """Another process is making the archive."""


def make(force: bool = False) -> Path | None:
    """Make this JVM's archive unless a usable one exists; the path, or None without java. Raises
    :class:`Busy` when another process holds the folder's lock (it is making the same archive)."""
    import fcntl

    path = archive_path()
    if path is None:
        return None
    if not force and usable() == path:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)  # readable by the stages' users, writable by its owner only
    with (path.parent / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another process is making the class-data archive in {path.parent}") from None
        if not force and usable() == path:  # made meanwhile
            return path
        return _make(path)


def background() -> Path:
    """Start ``kcure spark-archive`` detached (it outlives the caller); its log's path."""
    folder = archive_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "spark-archive.log"
    with log.open("w") as out:
        subprocess.Popen(
            [sys.executable, "-m", "kcure.cli", "spark-archive"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    return log


def _make(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".jsa", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # the JVM writes it as it exits
    try:
        for step in (f"-XX:ArchiveClassesAtExit={tmp}", f"-XX:SharedArchiveFile={tmp} -Xshare:on"):
            proc = subprocess.run(
                [sys.executable, "-m", "kcure.core.classdata", step], capture_output=True, text=True, timeout=600
            )
            if proc.returncode != 0 or not Path(tmp).is_file():
                raise RuntimeError(f"the class-data archive could not be made ({step.split('=')[0]}): "
                                   + proc.stderr.strip()[-800:])  # fmt: skip
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    for old in path.parent.glob("spark-*.jsa"):  # archives of jars or a JVM no longer installed
        if old != path:
            old.unlink(missing_ok=True)
    return path


if __name__ == "__main__":  # the archive's two JVMs: python -m kcure.core.classdata -XX:...
    _workload(sys.argv[1])
