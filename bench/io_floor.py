"""The I/O floor: pyarrow reading the landing files (same encodings) and writing compressed Parquet.

No verification, normalization, quarantine or gates: only what any ingestion must do. Uses the same
number of cores as the pipeline (pyarrow threads over files, one file at a time).

    .venv/bin/python bench/io_floor.py LANDING OUTDIR
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from kcure.core.config import load_config
from kcure.core.deliveries import Manifest


def floor_one(path: Path, feed, out: Path) -> int:  # type: ignore[no-untyped-def]
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    enc = "utf-8" if feed.encoding == "utf-8-sig" else feed.encoding
    if not data.isascii():  # transcode to UTF-8 as any reader of these encodings must
        data = data.decode(enc, errors="replace").encode("utf-8")
    if feed.format == "fixed":
        opts = pcsv.ParseOptions(delimiter="\x1f", quote_char=False)
        ro = pcsv.ReadOptions(column_names=["line"])
    else:
        opts = pcsv.ParseOptions(delimiter=feed.delimiter, invalid_row_handler=lambda row: "skip")
        ro = pcsv.ReadOptions(skip_rows=1, column_names=feed.column_names)
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=ro,
            parse_options=opts,
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in ro.column_names}),
        )
    except pa.ArrowInvalid as exc:  # a file with no data line (small populations have some)
        if "Empty CSV" not in str(exc):
            raise
        table = pa.table({n: pa.array([], pa.string()) for n in ro.column_names})
    pq.write_table(table, out, compression="zstd")
    return table.num_rows


def run(landing: Path, out: Path) -> dict[str, float]:
    cfg = load_config()
    jobs = []
    for mpath in sorted(landing.glob("*/*/d*/_MANIFEST.json")):
        m = Manifest.from_json(mpath.read_text(encoding="utf-8"))
        latest = max(p.name for p in mpath.parent.parent.iterdir() if (p / "_MANIFEST.json").exists())
        if mpath.parent.name != latest:
            continue
        feed = cfg.feed(m.feed)
        for f in m.files:
            target = out / m.feed / str(m.year)
            target.mkdir(parents=True, exist_ok=True)
            jobs.append((mpath.parent / f.name, feed, target / f"{f.name.split('.')[0]}.parquet"))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:  # the cores the pipeline has
        rows = sum(pool.map(lambda j: floor_one(*j), jobs))
    seconds = time.perf_counter() - t0
    written = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds, "bytes_written": written}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2])), indent=2))
