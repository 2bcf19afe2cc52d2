"""The landing-zone layout and delivery manifests of docs/contract.md §2 (shared by generator and ingestion)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "_MANIFEST.json"
#: The ten feeds of the contract, in the order the pipeline lists them. Kept here as a constant so
#: DAG files can name them without reading conf/ at parse time; tests check it equals conf/feeds.yaml.
FEEDS = (
    "kccr_registry",
    "nhis_eligibility",
    "nhis_screening",
    "hira_t200",
    "hira_t300",
    "hira_t400",
    "hira_t530",
    "kostat_death",
    "kdca_covid_case",
    "kdca_vaccination",
)
DELIVERY_RE = re.compile(r"^d(\d{3})$")


@dataclass(frozen=True)
class ManifestFile:
    name: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    feed: str
    year: int
    delivery: int
    institution: str
    format: str
    encoding: str
    delimiter: str
    header: bool
    files: list[ManifestFile] = field(default_factory=list)
    delivered_at: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw: dict[str, Any] = json.loads(text)
        files = [ManifestFile(**f) for f in raw.pop("files")]
        return cls(files=files, **raw)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def delivery_dir(landing: Path, feed: str, year: int, delivery: int) -> Path:
    return landing / feed / str(year) / f"d{delivery:03d}"


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write ``_MANIFEST.json`` last and atomically: its presence means the delivery is complete."""
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.to_json(), encoding="utf-8")
    final = directory / MANIFEST
    os.replace(tmp, final)
    return final
