"""The staging zone: one versioned, atomically switched partition per (feed, year).

Layout (all directories owner-only, files owner read/write, because staging still holds identifiers)::

    staging/<feed>/<year>/v-d002-<digest>/part-00000.parquet   one version per staged delivery
    staging/<feed>/<year>/CURRENT                               JSON naming the live version
    quarantine/<feed>/<year>/v-d002-<digest>.parquet            the rows that version left out

A new version is written under a temporary name, renamed into place, and only then made live by
atomically replacing ``CURRENT``. A reader resolves ``CURRENT`` once and reads that one version, so
it sees the old partition or the new one, never a mix; a crash before the switch leaves the previous
version live. Superseded versions are kept for ``staging.retention_days`` and then purged.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from kcure.core.zones import DIR_MODE, restricted_dir, write_json_atomic, write_restricted_parquet

if TYPE_CHECKING:
    from kcure.core.config import Config

CURRENT = "CURRENT"


@dataclass
class StagedVersion:
    """What CURRENT records about the live version of a feed-year."""

    feed: str
    year: int
    delivery: int
    version: str
    files: list[dict[str, Any]]  # name, sha256, rows (as the manifest says, verified)
    delivered_rows: int
    staged_rows: int
    quarantined_rows: int
    conf_digest: str
    staged_at: str
    gate: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> tuple[int, tuple[str, ...], str]:
        return (self.delivery, tuple(f["sha256"] for f in self.files), self.conf_digest)


class Staging:
    def __init__(self, staging_root: Path, quarantine_root: Path) -> None:
        self.root = staging_root
        self.quarantine_root = quarantine_root

    def partition(self, feed: str, year: int) -> Path:
        return self.root / feed / str(year)

    def current(self, feed: str, year: int) -> StagedVersion | None:
        path = self.partition(feed, year) / CURRENT
        if not path.exists():
            return None
        return StagedVersion(**json.loads(path.read_text(encoding="utf-8")))

    def current_path(self, feed: str, year: int) -> Path | None:
        cur = self.current(feed, year)
        return self.partition(feed, year) / cur.version if cur else None

    def read(self, feed: str, year: int) -> pa.Table | None:
        path = self.current_path(feed, year)
        if path is None:
            return None
        return pq.read_table(sorted(path.glob("*.parquet")))

    def begin(self, feed: str, year: int) -> Path:
        """A fresh temporary folder for a version being written."""
        restricted_dir(self.root)
        part = self.partition(feed, year)
        part.mkdir(parents=True, exist_ok=True)
        for stale in part.glob(".tmp-*"):  # left by a crash: never live, safe to remove
            shutil.rmtree(stale, ignore_errors=True)
        tmp = part / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(mode=DIR_MODE)
        return tmp

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, tmp: Path, record: StagedVersion, quarantine: pa.Table) -> None:
        """Move the version into place, write its quarantine, then switch CURRENT atomically."""
        part = self.partition(record.feed, record.year)
        final = part / record.version
        if final.exists():  # the same content staged before (for example after a crash after the rename)
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
        qdir = restricted_dir(self.quarantine_root / record.feed / str(record.year))
        write_restricted_parquet(quarantine, qdir / f"{record.version}.parquet")
        write_json_atomic(part / CURRENT, asdict(record))

    def purge(self, retention_days: float, now: float | None = None) -> list[Path]:
        """Delete superseded versions (and their quarantine) older than the retention period."""
        now = now or time.time()
        removed = []
        for cur_file in self.root.glob(f"*/*/{CURRENT}"):
            part = cur_file.parent
            live = json.loads(cur_file.read_text(encoding="utf-8"))["version"]
            for v in part.glob("v-*"):
                if v.name != live and now - v.stat().st_mtime > retention_days * 86400:
                    shutil.rmtree(v)
                    q = self.quarantine_root / part.parent.name / part.name / f"{v.name}.parquet"
                    q.unlink(missing_ok=True)
                    removed.append(v)
        return removed


def staged_inputs(cfg: Config) -> list[dict[str, Any]]:
    """The live staged version of every feed-year: what a build starting now reads."""
    staging = Staging(cfg.local_path("staging"), cfg.local_path("quarantine"))
    inputs = []
    for cur in sorted(staging.root.glob("*/*/CURRENT")):
        v = staging.current(cur.parent.parent.name, int(cur.parent.name))
        if v is not None:
            inputs.append(
                {
                    "feed": v.feed,
                    "year": v.year,
                    "delivery": v.delivery,
                    "version": v.version,
                    "files": v.files,
                    "delivered_rows": v.delivered_rows,
                    "staged_rows": v.staged_rows,
                    "quarantined_rows": v.quarantined_rows,
                }
            )
    return inputs
