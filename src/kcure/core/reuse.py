"""Incremental builds: what a stage's output was made from, and finding an earlier build's equal output.

A stage that can reuse an output writes ``_REUSE_KEY`` (JSON, ``{"key": ..., ...}``) into it after
the output is complete. ``key`` is a sha256 over everything the output is a function of; a later
build whose key for the same output is equal hard-links the earlier build's files instead of
computing them again. Files whose names start with ``_`` are skipped by every Parquet reader.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from kcure.core.config import Config

REUSE_KEY = "_REUSE_KEY"


def code_digest(module: str) -> str:
    """sha256 of the code that shapes a stage's output: the stage's ``module``, every ``kcure.core``
    module (transforms, rules, configuration, keys) and the Spark version that runs it. Sources are
    read through their loaders, so the digest is the same from the source tree and from the zip that
    spark-submit ships (``kcure.cluster``)."""
    import importlib.util
    import pkgutil

    import pyspark

    import kcure.core

    names = [module, *sorted(f"kcure.core.{m.name}" for m in pkgutil.iter_modules(kcure.core.__path__))]
    h = hashlib.sha256(pyspark.__version__.encode())
    for name in names:
        spec = importlib.util.find_spec(name)
        source = spec.loader.get_source(name) if spec is not None and spec.loader is not None else None  # type: ignore[attr-defined]
        if source is None:
            raise RuntimeError(f"cannot read the source of {name}: the build cannot tell what it may reuse")
        h.update(name.encode())
        h.update(source.encode())
    return h.hexdigest()


def conf_digest(cfg: Config, names: tuple[str, ...]) -> str:
    """sha256 of the named files of the configuration folder, in that order."""
    h = hashlib.sha256()
    for name in names:
        h.update(name.encode())
        h.update((cfg.conf_dir / name).read_bytes())
    return h.hexdigest()


def key_of(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def enabled(cfg: Config) -> bool:
    """``builds.reuse`` of ``conf/pipeline.yaml`` (on unless turned off)."""
    return bool(cfg.pipeline.get("builds", {}).get("reuse", True))


def read_key(folder: Path) -> dict[str, Any] | None:
    """The reuse record of a complete output folder, or None (no record: never reused, never a key)."""
    try:
        doc = json.loads((folder / REUSE_KEY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("key"), str) else None


def files_identity(folder: Path, *, inodes: bool = False) -> str:
    """A digest of which Parquet files ``folder`` holds: each one's path, size and modification time
    (with ``inodes``, also its device and inode: a hard link is the same file, a copy never is).
    A file replaced or rewritten after the output was made changes it."""
    ids = []
    for f in sorted(folder.rglob("*.parquet")):
        st = f.stat()
        ids.append(
            [str(f.relative_to(folder)), st.st_size, st.st_mtime_ns, *([st.st_dev, st.st_ino] if inodes else [])]
        )
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest() if ids else ""


def write_key(folder: Path, key: str, **extra: Any) -> None:
    """Mark ``folder`` complete and made from ``key`` (written last, after the output itself), with
    the identity of the files it was made as: an output whose files were replaced since is never reused."""
    doc = {"key": key, **extra, "files": files_identity(folder)}
    (folder / REUSE_KEY).write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")


def reusable(out: Path, rel: str, key: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest earlier build's ``<build>/<rel>`` whose reuse key is ``key`` and whose files are still
    the ones it was made as (``out`` is this build's folder; its siblings are the earlier builds of
    the same zone), with its reuse record."""
    found = []
    for candidate in out.parent.glob(f"*/{rel}/{REUSE_KEY}"):
        folder = candidate.parent
        if out in folder.parents:
            continue
        doc = read_key(folder)
        if doc is not None and doc["key"] == key and doc.get("files") == files_identity(folder):
            found.append((candidate.stat().st_mtime, str(folder), doc))
    if not found:
        return None
    _, newest, doc = max(found)
    return Path(newest), doc


def relation_digest(df: DataFrame) -> str:
    """An order-free digest of a relation's rows, computed by Spark in one aggregate: the row count
    and the sums of two independent 64-bit hashes of every row (xxhash64, and murmur3 over the row
    and its xxhash). Equal relations always give equal digests; different ones collide with a
    probability around 2^-64 per comparison. Built-in expressions only, so no Python runs per row."""
    from pyspark.sql import functions as F

    cols = [F.col(c) for c in df.columns]
    h1 = F.xxhash64(*cols)
    h2 = F.hash(h1, *cols).cast("long") * F.lit(2654435761) + F.hash(*cols, F.lit("b")).cast("long")
    row = df.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(h1.cast("decimal(38,0)")).alias("a"),
        F.sum(h2.cast("decimal(38,0)")).alias("b"),
    ).collect()[0]
    return hashlib.sha256(f"{','.join(df.columns)}|{row['n']}|{row['a']}|{row['b']}".encode()).hexdigest()
