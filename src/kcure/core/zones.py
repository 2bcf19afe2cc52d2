"""The zones data moves through, what each stage's output is called, and how zones are written.

    landing/ ─ingest─▶ staging/ (+ quarantine/) ─pseudonymize─▶ pseudonymized/<build>/ ─link─▶
    linked/<build>/ ─protect─▶ protected/<build>/ ─check─▶ reports/builds/<build>/check.json
    ─publish─▶ warehouse/ + catalog (a release) ─report─▶ reports/releases/<tag>/

Every stage writes its own zone and never edits another's, so a stage can always be run again:
it clears its own output for the build and recomputes it from inputs that did not change. Zones
that hold identifiers, or could lead back to them (staging, quarantine, lineage, protected), are
owner-only from the moment they are written.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from kcure.core.config import Config

DIR_MODE = 0o700
FILE_MODE = 0o600
#: what the release's group may do: read the release and its reports, traverse to them, nothing else
SHARED_DIR_MODE, SHARED_FILE_MODE, TRAVERSE_MODE = 0o750, 0o640, 0o710

# what the stages' outputs are called inside their zone
LINEAGE = "_lineage"  # linked/<build>/_lineage/<feed>/: each staged row's source line and fate (owner-only)
LINKAGE_REPORT = "_linkage_report.json"  # linked/<build>/: rows per feed-year and status
LINKAGE_QUALITY = "_linkage_quality.json"  # linked/<build>/: precision/recall against a synthetic truth
DICTIONARY = "_dictionary.json"  # linked/<build>/: the data dictionary (also .md)
PRIVACY = "_privacy.json"  # protected/<build>/: k-anonymity and l-diversity, what recoding cost
#: the fate of a staged row in the linkage report (with duplicates_dropped and conflicts_dropped)
LINKAGE_STATUSES = ("linked_rrn", "linked_secondary", "linked_via_mid", "out_of_cohort", "unlinked")


@dataclass(frozen=True)
class BuildZones:
    """Where one build's outputs are."""

    cfg: Config
    build: str

    def zone(self, name: str) -> Path:
        return self.cfg.local_path(name) / self.build

    @property
    def pseudonymized(self) -> Path:
        return self.zone("pseudonymized")

    @property
    def linked(self) -> Path:
        return self.zone("linked")

    @property
    def protected(self) -> Path:
        return self.zone("protected")

    @property
    def summaries(self) -> Path:
        return self.cfg.local_path("reports") / "builds" / self.build

    def summary(self, stage: str) -> Path:
        return self.summaries / f"{stage}.json"

    @property
    def data_docs(self) -> Path:
        """The check stage's Great Expectations Data Docs of the library tables."""
        return self.cfg.local_path("reports") / "releases" / self.build / "data_docs"


def private_umask() -> None:
    """Every file this process writes from now on is its owner's alone, unless shared explicitly."""
    os.umask(0o077)


def share_with_group(path: Path, group: str | None, *, tree: bool = True) -> None:
    """Let ``group`` (default: the owner's group) read ``path``: the tree (dirs 0750, files 0640), or
    for a folder on the way to it (``tree=False``) traversal only (0710), so names cannot be listed."""
    import grp

    gid = grp.getgrnam(group).gr_gid if group else -1
    if not tree:
        os.chown(path, -1, gid)
        os.chmod(path, TRAVERSE_MODE)
        return
    for root, _dirs, files in os.walk(path):
        os.chown(root, -1, gid)
        os.chmod(root, SHARED_DIR_MODE)
        for f in files:
            os.chown(os.path.join(root, f), -1, gid)
            os.chmod(os.path.join(root, f), SHARED_FILE_MODE)


def restricted_dir(path: Path) -> Path:
    """Create ``path`` readable by its owner only (its parents are created as usual)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def restrict_tree(path: Path) -> None:
    """Owner-only: the directory tree and every file in it."""
    for root, _dirs, files in os.walk(path):
        os.chmod(root, DIR_MODE)
        for f in files:
            os.chmod(os.path.join(root, f), FILE_MODE)


def clear(path: Path) -> None:
    """Remove a stage's earlier output, whole, before it is written again."""
    shutil.rmtree(path, ignore_errors=True)


def write_restricted_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd")
    os.chmod(path, FILE_MODE)


def write_json_atomic(path: Path, data: Any, mode: int = FILE_MODE, *, sort_keys: bool = True) -> None:
    """Replace ``path`` with ``data`` as JSON in one rename: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n", encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` owner-only with ``data``; it must not exist yet."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None where there is no such file."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def link_or_copy_tree(src: Path, dst: Path, only: str | None = None) -> None:
    """``dst`` holds the files of ``src`` (or its one file ``only``) under the same names: hard links where
    the file system allows them (no bytes copied; Spark never rewrites a file in place), copies elsewhere."""
    for root, _dirs, files in os.walk(src):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files if only is None else [only]:
            s, d = Path(root) / name, target / name
            try:
                os.link(s, d)
            except OSError:
                shutil.copy2(s, d)
