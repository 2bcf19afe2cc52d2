"""Reading generated deliveries back, independently of the pipeline's own parser (test helper)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from kcure.core.config import Feed
from kcure.core.deliveries import Manifest


@dataclass
class Line:
    file: str
    line: int
    raw: bytes
    person_id: int | None
    faults: set[str]
    values: dict[str, str] | None  # None when the line does not decode or has the wrong shape


def manifest(landing: Path, feed: str, year: int, delivery: int = 1) -> Manifest:
    path = landing / feed / str(year) / f"d{delivery:03d}" / "_MANIFEST.json"
    return Manifest.from_json(path.read_text(encoding="utf-8"))


def latest_delivery(landing: Path, feed: str, year: int) -> int:
    return max(int(p.name[1:]) for p in (landing / feed / str(year)).iterdir() if (p / "_MANIFEST.json").exists())


def raw_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _split_fixed(feed: Feed, raw: bytes) -> dict[str, str] | None:
    widths = [int(c.width or 0) for c in feed.columns]
    if len(raw) != sum(widths):
        return None
    out, pos = {}, 0
    try:
        for c, w in zip(feed.columns, widths, strict=True):
            out[c.name] = raw[pos : pos + w].decode(feed.encoding).rstrip(" ")
            pos += w
    except UnicodeDecodeError:
        return None
    return out


def lines(landing: Path, feed: Feed, year: int, delivery: int | None = None) -> Iterator[Line]:
    d = delivery or latest_delivery(landing, feed.name, year)
    m = manifest(landing, feed.name, year, d)
    truth_dir = landing / "_truth" / "rows" / feed.name / str(year) / f"d{d:03d}"
    for f in m.files:
        data = raw_bytes(landing / feed.name / str(year) / f"d{d:03d}" / f.name)
        if feed.encoding == "utf-8-sig":
            assert data.startswith(b"\xef\xbb\xbf"), f"{f.name}: no BOM"
            data = data[3:]
        raw_lines = data.split(b"\n")
        assert raw_lines[-1] == b"", f"{f.name}: does not end with a newline"
        raw_lines = raw_lines[:-1]
        first = 1
        if feed.header:
            enc = "utf-8" if feed.encoding == "utf-8-sig" else feed.encoding
            assert raw_lines[0].decode(enc).split(feed.delimiter) == feed.column_names, f"{f.name}: header"
            first = 2
        truth = pq.read_table(truth_dir / f"{f.name.split('.')[0]}.parquet").to_pylist()
        assert len(truth) == len(raw_lines) - (first - 1), f"{f.name}: truth rows != delivered rows"
        for t, raw in zip(truth, raw_lines[first - 1 :], strict=True):
            values: dict[str, str] | None
            if feed.format == "fixed":
                values = _split_fixed(feed, raw)
            else:
                try:
                    text = raw.decode("utf-8" if feed.encoding == "utf-8-sig" else feed.encoding)
                    row = next(csv.reader(io.StringIO(text), delimiter=feed.delimiter))
                    values = dict(zip(feed.column_names, row, strict=True))
                except (UnicodeDecodeError, ValueError):
                    values = None
            faults = set((t["faults"] or "").split(",")) - {""}
            yield Line(f.name, t["line"], raw, t["person_id"], faults, values)


def summary(landing: Path) -> dict[str, object]:
    return json.loads((landing / "_truth" / "generator.json").read_text(encoding="utf-8"))
