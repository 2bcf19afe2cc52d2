"""Parsing one delivered file with pyarrow into typed rows, and quarantine records for the rest.

Driven entirely by ``conf/feeds.yaml``: encoding, delimiter, header, fixed-width byte layout and
column types. Normalization happens here: dates become DATE, codes are trimmed, upper-cased and
undotted, RRNs lose their hyphen, blanks become NULL. Every delivered line ends up either as a
staged row or as a quarantine record naming its file, line, column and reason. Reasons never
quote the offending value, because values may be identifiers.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from kcure.core.config import Column, Feed

ARROW_TYPES = {
    "string": pa.string(),
    "code": pa.string(),
    "rrn": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
}
PROVENANCE = [("_delivery", pa.int16()), ("_file", pa.string()), ("_line", pa.int64())]
QUARANTINE_SCHEMA = pa.schema(
    [
        ("feed", pa.string()),
        ("year", pa.int16()),
        ("delivery", pa.int16()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)
_SURROGATE = re.compile("[\udc80-\udcff]")
#: stands in for an empty or undecodable line so that pyarrow reports it as a bad row with its true
#: line number (pyarrow does not count the empty lines it skips)
_SENTINEL = "\x01"
_EMPTY_LINE = re.compile(r"(?<=\n)(?=\n)")
_DATE_SHAPES = {"%Y%m%d": r"^\d{8}$", "%Y-%m-%d": r"^\d{4}-\d{2}-\d{2}$"}


class FormatError(ValueError):
    """The file is not in the format its feed promises (for example an unknown header)."""


def staged_schema(feed: Feed) -> pa.Schema:
    return pa.schema([(c.name, ARROW_TYPES[c.type]) for c in feed.columns] + PROVENANCE)


@dataclass
class Parsed:
    table: pa.Table
    quarantine: list[tuple[int, str, str]] = field(default_factory=list)  # (line, column, reason)
    delivered_rows: int = 0

    def quarantine_table(self, feed: str, year: int, delivery: int, file: str) -> pa.Table:
        q = sorted(self.quarantine)
        return pa.table(
            {
                "feed": pa.array([feed] * len(q), pa.string()),
                "year": pa.array([year] * len(q), pa.int16()),
                "delivery": pa.array([delivery] * len(q), pa.int16()),
                "file": pa.array([file] * len(q), pa.string()),
                "line": pa.array([x[0] for x in q], pa.int64()),
                "column": pa.array([x[1] for x in q], pa.string()),
                "reason": pa.array([x[2] for x in q], pa.string()),
            },
            schema=QUARANTINE_SCHEMA,
        )


def count_rows(data: bytes, feed: Feed) -> int:
    """Data rows in decompressed file bytes: lines, less the header."""
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    return lines - (1 if feed.header and lines else 0)


def _column_of(line: str, pos: int, feed: Feed) -> str:
    if feed.format == "fixed":
        return feed.columns[0].name
    idx = line.count(feed.delimiter, 0, pos)
    return feed.columns[idx].name if idx < len(feed.columns) else "(extra field)"


def _typed(col: Column, raw: pa.Array) -> tuple[pa.Array, pa.Array | None, str]:
    """(typed values, failure mask or None, reason)."""
    s = pc.utf8_trim_whitespace(raw)
    if col.type == "code":
        s = pc.replace_substring(pc.utf8_upper(s), ".", "")
    elif col.type == "rrn":
        s = pc.replace_substring(s, "-", "")
    blank = pc.equal(s, "")
    s = pc.if_else(blank, pa.scalar(None, pa.string()), s)
    if col.type in ("string", "code", "rrn"):
        return s, None, ""
    if col.type == "int":
        ok = pc.match_substring_regex(s, r"^-?\d+$")
        bad = pc.fill_null(pc.invert(ok), False)
        vals = pc.cast(pc.if_else(bad, pa.scalar(None, pa.string()), s), pa.int64())
        return vals, bad, "not an integer"
    if col.type == "float":
        ok = pc.match_substring_regex(s, r"^-?\d+(\.\d+)?$")
        bad = pc.fill_null(pc.invert(ok), False)
        vals = pc.cast(pc.if_else(bad, pa.scalar(None, pa.string()), s), pa.float64())
        return vals, bad, "not a number"
    fmt = col.format or "%Y%m%d"
    shape_ok = pc.fill_null(pc.match_substring_regex(s, _DATE_SHAPES.get(fmt, ".*")), True)
    ts = pc.strptime(s, format=fmt, unit="s", error_is_null=True)
    # Arrow's strptime rolls 2015-02-30 over to March: format it back and insist on the same text
    same = pc.equal(pc.strftime(ts, format=fmt), s)
    bad_shape = pc.invert(shape_ok)
    impossible = pc.and_(shape_ok, pc.invert(pc.fill_null(same, False)))
    impossible = pc.and_(impossible, pc.is_valid(s))
    bad = pc.or_(bad_shape, impossible)
    vals = pc.cast(pc.if_else(bad, pa.scalar(None, pa.timestamp("s")), ts), pa.date32())
    reason = f"not a date in format {fmt}"
    # one reason string per failing kind is attached by the caller through two masks
    return (
        vals,
        pc.if_else(
            bad_shape, pa.scalar(1, pa.int8()), pc.if_else(impossible, pa.scalar(2, pa.int8()), pa.scalar(0, pa.int8()))
        ),
        reason,
    )


def _convert(feed: Feed, strings: dict[str, pa.Array], lines: np.ndarray, parsed: Parsed) -> tuple[pa.Table, pa.Array]:
    n = len(lines)
    failed = np.zeros(n, dtype=bool)
    columns = {}
    for col in feed.columns:
        vals, bad, reason = _typed(col, strings[col.name])
        columns[col.name] = vals
        if bad is None:
            continue
        if col.type == "date":
            kind = np.asarray(bad.to_numpy(zero_copy_only=False))
            for i in np.flatnonzero(kind == 1):
                parsed.quarantine.append((int(lines[i]), col.name, f"not a date in format {col.format}"))
            for i in np.flatnonzero(kind == 2):
                parsed.quarantine.append((int(lines[i]), col.name, "impossible date"))
            failed |= kind > 0
        else:
            mask = np.asarray(bad.to_numpy(zero_copy_only=False), dtype=bool)
            for i in np.flatnonzero(mask):
                parsed.quarantine.append((int(lines[i]), col.name, reason))
            failed |= mask
    keep = pa.array(~failed)
    table = pa.table(columns).filter(keep)
    return table, pc.filter(pa.array(lines), keep)


def _with_provenance(feed: Feed, table: pa.Table, lines: pa.Array, delivery: int, file: str) -> pa.Table:
    n = table.num_rows
    table = table.append_column("_delivery", pa.array(np.full(n, delivery, dtype=np.int16)))
    table = table.append_column("_file", pa.array([file] * n, pa.string()))
    table = table.append_column("_line", lines.cast(pa.int64()))
    return table.cast(staged_schema(feed))


def _decode(data: bytes, feed: Feed) -> str:
    if feed.encoding == "utf-8-sig":
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        return data.decode("utf-8", errors="surrogateescape")
    if data.isascii():
        return data.decode("ascii")
    return data.decode(feed.encoding, errors="surrogateescape")


def _blank_bad_lines(text: str, feed: Feed, parsed: Parsed) -> tuple[str, set[int]]:
    """Replace lines holding undecodable bytes by a sentinel line (line numbers stay put)."""
    bad: dict[int, tuple[int, int, int]] = {}
    line_no, last = 1, 0
    for m in _SURROGATE.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        line_no += text.count("\n", last, start)
        last = start
        if line_no not in bad:
            end = text.find("\n", m.start())
            bad[line_no] = (start, end if end >= 0 else len(text), m.start() - start)
    if not bad:
        return text, set()
    pieces, pos = [], 0
    for ln, (start, end, off) in sorted(bad.items()):
        parsed.quarantine.append((ln, _column_of(text[start:end], off, feed), f"undecodable byte in {feed.encoding}"))
        pieces.append(text[pos:start])
        pieces.append(_SENTINEL)
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces), set(bad)


def parse_csv(data: bytes, feed: Feed, delivery: int, file: str) -> Parsed:
    parsed = Parsed(table=staged_schema(feed).empty_table())
    text = _decode(data, feed)
    if feed.header:
        head, _, _ = text.partition("\n")
        got = head.rstrip("\r").split(feed.delimiter)
        if got != feed.column_names:
            # a file without its header has a data row here: never echo the fields, only count them
            unknown = set(got) - set(feed.column_names)
            raise FormatError(
                f"{file}: line 1: header does not match conf/feeds.yaml {feed.name} "
                f"({len(unknown)} field(s) not in the contract, not shown; "
                f"missing: {sorted(set(feed.column_names) - set(got))})"
            )
    text, bad_lines = _blank_bad_lines(text, feed, parsed)
    text = _EMPTY_LINE.sub(_SENTINEL, text)
    body_lines = text.split("\n")
    if body_lines and body_lines[-1] == "":
        body_lines.pop()
    first = 2 if feed.header else 1
    total = len(body_lines) - (first - 1)
    parsed.delivered_rows = total
    lengths = np.fromiter((len(x) for x in body_lines[first - 1 :]), dtype=np.int64, count=total)
    empty = set((np.flatnonzero(lengths == 1) + first).tolist()) - bad_lines
    empty = {ln for ln in empty if body_lines[ln - 1] == _SENTINEL}
    for ln in sorted(empty):
        parsed.quarantine.append((ln, "(line)", "empty line"))
    invalid: list[int] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        if row.text == _SENTINEL:  # an empty or undecodable line, already quarantined
            return "skip"
        invalid.append(int(row.number))
        parsed.quarantine.append(
            (int(row.number), "(line)", f"wrong field count: {row.actual_columns} of {row.expected_columns}")
        )
        return "skip"

    names = feed.column_names
    table = pcsv.read_csv(
        io.BytesIO(text.encode("utf-8")),
        read_options=pcsv.ReadOptions(column_names=names, skip_rows=first - 1, use_threads=False, block_size=1 << 26),
        parse_options=pcsv.ParseOptions(
            delimiter=feed.delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=True
        ),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        ),
    )
    skip = np.zeros(total, dtype=bool)
    for ln in (*bad_lines, *empty, *invalid):
        skip[ln - first] = True
    lines = np.flatnonzero(~skip) + first
    if len(lines) != table.num_rows:
        raise FormatError(f"{file}: parsed {table.num_rows} rows but expected {len(lines)} (quoting across lines?)")
    strings = {n: table.column(n).combine_chunks() for n in names}
    typed, kept = _convert(feed, strings, lines, parsed)
    parsed.table = _with_provenance(feed, typed, kept, delivery, file)
    return parsed


def parse_fixed(data: bytes, feed: Feed, delivery: int, file: str) -> Parsed:
    """Fixed-width text: each column's width is in bytes of the feed's encoding."""
    parsed = Parsed(table=staged_schema(feed).empty_table())
    widths = [int(c.width or 0) for c in feed.columns]
    total_width = sum(widths)
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    parsed.delivered_rows = len(raw_lines)
    values: dict[str, list[str]] = {c.name: [] for c in feed.columns}
    kept: list[int] = []
    for i, raw in enumerate(raw_lines, start=1):
        raw = raw.rstrip(b"\r")
        if len(raw) != total_width:
            parsed.quarantine.append((i, "(line)", f"wrong line length: {len(raw)} bytes, layout has {total_width}"))
            continue
        fields, pos, bad_col = [], 0, None
        for c, w in zip(feed.columns, widths, strict=True):
            try:
                fields.append(raw[pos : pos + w].decode(feed.encoding))
            except UnicodeDecodeError:
                bad_col = c.name
                break
            pos += w
        if bad_col is not None:
            parsed.quarantine.append((i, bad_col, f"undecodable byte in {feed.encoding}"))
            continue
        for c, v in zip(feed.columns, fields, strict=True):
            values[c.name].append(v)
        kept.append(i)
    strings = {n: pa.array(v, pa.string()) for n, v in values.items()}
    typed, kept_lines = _convert(feed, strings, np.array(kept, dtype=np.int64), parsed)
    parsed.table = _with_provenance(feed, typed, kept_lines, delivery, file)
    return parsed


def parse(data: bytes, feed: Feed, delivery: int, file: str) -> Parsed:
    """Parse decompressed file bytes of one part file."""
    if feed.format == "fixed":
        return parse_fixed(data, feed, delivery, file)
    return parse_csv(data, feed, delivery, file)
