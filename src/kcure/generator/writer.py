"""Writing one delivery of one feed-year: part files, gzip, sha256, manifest, and the row truth."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kcure.core.config import Feed
from kcure.core.deliveries import Manifest, ManifestFile, delivery_dir, write_manifest
from kcure.generator import text

TRUTH_SCHEMA = pa.schema([("line", pa.int64()), ("person_id", pa.int64()), ("faults", pa.string())])


class _HashingFile:
    """A binary file that hashes what is written to it."""

    def __init__(self, path: Path) -> None:
        self._fh: IO[bytes] = path.open("wb")
        self.sha = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        return self._fh.write(data)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class DeliveryWriter:
    """Appends encoded lines to rolling part files of one (feed, year, delivery)."""

    def __init__(
        self, landing: Path, truth: Path, feed: Feed, year: int, delivery: int, part_rows: int, delivered_at: str
    ) -> None:
        self.feed, self.year, self.delivery = feed, year, delivery
        self.dir = delivery_dir(landing, feed.name, year, delivery)
        self.truth_dir = delivery_dir(truth / "rows", feed.name, year, delivery)
        self.part_rows = part_rows
        self.delivered_at = delivered_at
        self.files: list[ManifestFile] = []
        self._raw: _HashingFile | None = None
        self._out: Any = None
        self._rows = 0
        self._truth: list[pa.RecordBatch] = []
        self._header = text.header_bytes(feed)
        self._first_line = 2 if feed.header else 1

    @property
    def _part_name(self) -> str:
        return f"part-{len(self.files):05d}{self.feed.file_suffix}"

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._raw = _HashingFile(self.dir / self._part_name)
        if self.feed.compression == "gzip":
            self._out = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=6)
        else:
            self._out = self._raw
        if self.feed.encoding == "utf-8-sig":
            self._out.write(b"\xef\xbb\xbf")
        self._out.write(self._header)
        self._rows = 0
        self._truth = []

    def _close_part(self) -> None:
        assert self._raw is not None
        if self._out is not self._raw:
            self._out.close()
        self._raw.close()
        name = self._part_name
        self.files.append(ManifestFile(name=name, rows=self._rows, sha256=self._raw.sha.hexdigest()))
        self.truth_dir.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_batches(self._truth, schema=TRUTH_SCHEMA) if self._truth else TRUTH_SCHEMA.empty_table()
        pq.write_table(table, self.truth_dir / f"{Path(name).name.split('.')[0]}.parquet", compression="zstd")
        self._raw = None
        self._out = None

    def append(self, lines: pa.Array, pid: np.ndarray, faults: np.ndarray) -> None:
        pos, n = 0, len(lines)
        while pos < n:
            if self._raw is None:
                self._open()
            take = min(self.part_rows - self._rows, n - pos)
            chunk = lines.slice(pos, take)
            self._out.write(text.encode(text.concat(chunk), self.feed.encoding))
            first = self._first_line + self._rows
            self._truth.append(
                pa.record_batch(
                    [
                        pa.array(np.arange(first, first + take, dtype=np.int64)),
                        pa.array(pid[pos : pos + take], type=pa.int64()),
                        pa.array(faults[pos : pos + take], type=pa.string()),
                    ],
                    schema=TRUTH_SCHEMA,
                )
            )
            self._rows += take
            pos += take
            if self._rows >= self.part_rows:
                self._close_part()

    def close(self, corrupt: str | None = None) -> Manifest:
        """Finish the last part and write the manifest (``corrupt``: 'rows' or 'sha256' to lie)."""
        if self._raw is not None or not self.files:
            if self._raw is None:
                self._open()
            self._close_part()
        files = list(self.files)
        if corrupt == "rows":
            files[0] = ManifestFile(files[0].name, files[0].rows + 1, files[0].sha256)
        elif corrupt == "sha256":
            bad = ("0" if files[0].sha256[0] != "0" else "1") + files[0].sha256[1:]
            files[0] = ManifestFile(files[0].name, files[0].rows, bad)
        manifest = Manifest(
            feed=self.feed.name,
            year=self.year,
            delivery=self.delivery,
            institution=self.feed.institution,
            format=self.feed.format,
            encoding=self.feed.encoding,
            delimiter=self.feed.delimiter,
            header=self.feed.header,
            files=files,
            delivered_at=self.delivered_at,
        )
        write_manifest(self.dir, manifest)
        return manifest
