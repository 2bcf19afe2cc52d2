"""Turning generated columns into delivered text: formatting, quoting, fixed-width padding, encoding."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kcure.core.config import Column, Feed

#: stands for one undecodable byte (0xFF) until the text is encoded
BAD_BYTE = "\ue000"
_BAD_BYTE_UTF8 = BAD_BYTE.encode("utf-8")


def to_text(values: Any, col: Column) -> pa.Array:
    """One column as strings in the institution's format, blanks as ''."""
    arr: pa.Array
    if isinstance(values, pa.Array | pa.ChunkedArray):
        arr = values
    else:
        v = np.asarray(values)
        if np.issubdtype(v.dtype, np.datetime64):
            ts = pa.array(v.astype("datetime64[s]"))
            arr = pc.strftime(ts, format=col.format or "%Y%m%d")
        elif np.issubdtype(v.dtype, np.floating):
            a = pa.array(v, from_pandas=True)
            if col.type == "int":
                a = pc.cast(a, pa.int64(), safe=False)
            arr = a.cast(pa.string())
        elif np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.bool_):
            arr = pa.array(v).cast(pa.string())
        else:
            arr = pa.array(v, type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.fill_null(arr.cast(pa.string()), "")


def hyphenate_rrn(arr: pa.Array) -> pa.Array:
    """YYMMDDGXXXXXX -> YYMMDD-GXXXXXX for 13-character values; others unchanged."""
    thirteen = pc.equal(pc.utf8_length(arr), 13)
    joined = pc.binary_join_element_wise(pc.utf8_slice_codeunits(arr, 0, 6), pc.utf8_slice_codeunits(arr, 6, 13), "-")
    return pc.if_else(thirteen, joined, arr)


def csv_lines(cols: list[pa.Array], delimiter: str) -> pa.Array:
    """Delimited lines (with the trailing newline); values holding the delimiter or a quote are quoted."""
    quoted = []
    for a in cols:
        needs = pc.or_(pc.match_substring(a, delimiter), pc.match_substring(a, '"'))
        if pc.any(needs).as_py():
            esc = pc.binary_join_element_wise('"', pc.replace_substring(a, '"', '""'), '"', "")
            a = pc.if_else(needs, esc, a)
        quoted.append(a)
    line = pc.binary_join_element_wise(*quoted, delimiter)
    return pc.binary_join_element_wise(line, "\n", "")


def cp949_length(arr: pa.Array) -> pa.Array:
    """Byte length in cp949 of strings made of ASCII and Hangul (2 bytes a syllable)."""
    chars = pc.utf8_length(arr)
    utf8 = pc.binary_length(arr)
    return pc.divide(pc.add(chars, utf8), 2)


def fixed_lines(cols: list[pa.Array], widths: list[int]) -> pa.Array:
    """Fixed-width lines: each value left-aligned and space-padded to its width in cp949 bytes."""
    padded = []
    for a, w in zip(cols, widths, strict=True):
        blen = cp949_length(a)
        if pc.max(blen).as_py() is not None and pc.max(blen).as_py() > w:
            raise ValueError(f"a value is wider than its fixed-width field ({w} bytes)")
        pad = pc.subtract(pa.scalar(w, pa.int64()), pc.cast(blen, pa.int64()))
        spaces = pc.binary_repeat(pa.scalar(" "), pad)
        padded.append(pc.binary_join_element_wise(a, spaces, ""))
    line = pc.binary_join_element_wise(*padded, "")
    return pc.binary_join_element_wise(line, "\n", "")


def concat(arr: pa.Array) -> bytes:
    """The lines of a string array, back to back, without copying them one by one."""
    if len(arr) == 0:
        return b""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    return bytes(memoryview(arr.buffers()[2])[int(offsets[0]) : int(offsets[-1])])


def encode(text_utf8: bytes, encoding: str) -> bytes:
    """UTF-8 text (with BAD_BYTE markers) in the feed's encoding; each marker becomes byte 0xFF."""
    if encoding in ("utf-8", "utf-8-sig"):
        return text_utf8.replace(_BAD_BYTE_UTF8, b"\xff")
    if text_utf8.isascii():
        return text_utf8
    return text_utf8.decode("utf-8").replace(BAD_BYTE, "\udcff").encode(encoding, errors="surrogateescape")


def header_bytes(feed: Feed) -> bytes:
    if not feed.header:
        return b""
    head = feed.delimiter.join(feed.column_names) + "\n"
    return head.encode("utf-8" if feed.encoding == "utf-8-sig" else feed.encoding)
