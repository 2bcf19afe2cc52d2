"""Reading logs for leak scans as the text they hold: Spark 4 writes its event logs zstd-compressed
(``events_1_<app>.zstd``), and a scan of the compressed bytes would find nothing, whatever they hold."""

from __future__ import annotations

import re
from pathlib import Path

COMPRESSED = (".lz4", ".lzf", ".snappy")  # Spark's other event-log codecs: refused, never scanned as bytes


def read_text(path: Path) -> str:
    """The text of ``path``, decompressed when it is a zstd event log."""
    if path.suffix == ".zstd":
        import zstandard

        with path.open("rb") as f:
            return zstandard.ZstdDecompressor().stream_reader(f).read().decode("utf-8", errors="replace")
    if path.suffix in COMPRESSED:
        raise AssertionError(f"{path}: a compressed log this scan cannot read; decompress it or log uncompressed")
    return path.read_text(encoding="utf-8", errors="replace")


def event_logs(paths: list[Path]) -> list[Path]:
    """The Spark event-log files among ``paths`` (rolling logs: ``events_<n>_<app>[.codec]``)."""
    return [p for p in paths if p.is_file() and p.name.startswith("events_")]


#: a word of a scanned text: letters and digits, with inner hyphens (``850101-1234567``, ``010-1234-5678``)
TOKEN = re.compile(r"[0-9A-Za-z]+(?:-[0-9A-Za-z]+)*")


def tokens(text: str) -> set[str]:
    """The words of ``text`` a leak scan compares with identifiers."""
    return set(TOKEN.findall(text))


# Spark's own SQL metrics (rows, bytes, nanoseconds): accumulators it marks internal and "sql", whose
# update and total it writes as JSON strings of digits. A user-named accumulator carries no such mark.
_METRIC_FIELDS = frozenset({"Update", "Value"})


def _sql_metric(node: dict[str, object]) -> bool:
    return node.get("Metadata") == "sql" and node.get("Internal") is True


def event_log_words(path: Path) -> str:
    """An event log's text without Spark's measurements, for a token scan.

    Task metrics put 3,000 to 9,000 8-digit numbers in each log (bytes, nanoseconds, rows), and the
    test landing holds about 8,500 8-digit identifiers (provider codes, chart numbers): now and then
    one matches by chance, and a scan of the raw text fails on a coincidence, not a leak (CI on
    f37de39 did, on ``42372681``). This keeps every key and every string Spark writes (plans, SQL,
    properties, exception messages, node descriptions, user accumulators) and drops the JSON numbers
    and the all-digit update and total of Spark's internal SQL metrics: where Spark writes most of its
    measurements, and never a data value. Data that leaked into a plan or an error message is a
    string, so it stays in what is scanned."""
    import json

    out: list[str] = []

    def walk(node: object, key: str | None, metric: bool) -> None:
        if isinstance(node, dict):
            inner = _sql_metric(node)
            for k, v in node.items():
                out.append(str(k))
                walk(v, str(k), inner)
        elif isinstance(node, list):
            for v in node:
                walk(v, key, False)
        elif isinstance(node, str) and not (metric and key in _METRIC_FIELDS and node.lstrip("-").isdigit()):
            out.append(node)
        # numbers, booleans and nulls: Spark's ids, timings, sizes and flags

    for line in read_text(path).splitlines():
        if line.strip():
            walk(json.loads(line), None, False)
    return "\n".join(out)
