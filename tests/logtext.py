"""Reading logs for leak scans as the text they hold: Spark 4 writes its event logs zstd-compressed
(``events_1_<app>.zstd``), and a scan of the compressed bytes would find nothing, whatever they hold."""

from __future__ import annotations

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
