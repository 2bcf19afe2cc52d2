"""The I/O floor of provisioning: pyarrow reading every data file of the release's snapshots of the
extract's tables, and writing as many rows of each as the extract has, as compressed Parquet.

    .venv/bin/python bench/provision_floor.py RELEASE EXTRACT_DIR OUTDIR   (KCURE_HOME, KCURE_CONF set)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kcure.core.config import load_config
from kcure.projects.provisioning import release_files


def main(tag: str, extract: Path, out: Path) -> int:
    t0 = time.perf_counter()
    _, files = release_files(load_config(), tag)
    out.mkdir(parents=True, exist_ok=True)
    read = written = 0
    for table in sorted(p.name for p in extract.iterdir() if p.is_dir()):
        want = sum(pq.ParquetFile(f).metadata.num_rows for f in (extract / table).glob("*.parquet"))
        parts = [pq.read_table(f) for f in files[table]]
        data = pa.concat_tables(parts) if parts else pa.table({})
        read += data.num_rows
        pq.write_table(data.slice(0, want), out / f"{table}.parquet", compression="snappy")
        written += min(want, data.num_rows)
    print(json.dumps({"rows_read": read, "rows_written": written, "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
