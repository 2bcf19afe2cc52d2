"""Injecting the faults real deliveries have (docs/contract.md §3) into generated text.

Cell faults change one value (an RRN typo, a date in the wrong format, a code written ``C16.9``);
line faults break or repeat a whole line. Every injected fault is tagged on its row so the truth
records it. Rates come from ``conf/generator.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kcure.core import rrn as rrnlib
from kcure.core.config import Feed
from kcure.generator.text import BAD_BYTE


class Tags:
    """Fault names per row, kept sparse (faults are rare)."""

    def __init__(self, n: int, base: Any = None) -> None:
        self.n = n
        self.rows: dict[int, list[str]] = {}
        if base is not None:
            for i in np.flatnonzero(np.asarray(base) != ""):
                self.rows[int(i)] = [str(base[i])]

    def add(self, idx: Any, name: str) -> None:
        for i in np.asarray(idx).tolist():
            self.rows.setdefault(int(i), []).append(name)

    def array(self) -> np.ndarray:
        out = np.full(self.n, None, dtype=object)
        for i, names in self.rows.items():
            out[i] = ",".join(names)
        return out

    def copy(self) -> Tags:
        t = Tags(self.n)
        t.rows = {k: list(v) for k, v in self.rows.items()}
        return t


def _replace(arr: pa.Array, idx: np.ndarray, fn: Callable[[str], str]) -> pa.Array:
    if len(idx) == 0:
        return arr
    old = arr.take(pa.array(idx)).to_pylist()
    new = pa.array([fn(v) for v in old], type=pa.string())
    mask = np.zeros(len(arr), dtype=bool)
    mask[idx] = True
    return pc.replace_with_mask(arr, pa.array(mask), new)


def _pick(rng: np.random.Generator, arr: pa.Array, rate: float) -> np.ndarray:
    nonblank = np.asarray(pc.not_equal(arr, "").to_numpy(zero_copy_only=False), dtype=bool)
    return np.flatnonzero(nonblank & (rng.random(len(arr)) < rate))


def _wrong_date_format(fmt: str, fixed: bool) -> Callable[[str], str]:
    def fn(v: str) -> str:
        if fmt == "%Y%m%d":
            return f"{v[2:4]}.{v[4:6]}.{v[6:8]}" if fixed else f"{v[:4]}-{v[4:6]}-{v[6:8]}"
        return v.replace("-", "")

    return fn


def _impossible_date(fmt: str) -> Callable[[str], str]:
    def fn(v: str) -> str:
        return f"{v[:4]}0230" if fmt == "%Y%m%d" else f"{v[:4]}-02-30"

    return fn


def _code_variant(rng: np.random.Generator) -> Callable[[str], str]:
    def fn(v: str) -> str:
        k = int(rng.integers(0, 3))
        if k == 0 and len(v) >= 4:
            return f"{v[:3]}.{v[3:]}"
        if k == 1:
            return v.lower()
        return f" {v} "

    return fn


def cell_faults(
    rng: np.random.Generator, feed: Feed, cols: dict[str, pa.Array], rates: dict[str, Any], tags: Tags
) -> dict[str, pa.Array]:
    fixed = feed.format == "fixed"
    for c in feed.columns:
        if c.type == "rrn":
            idx = _pick(rng, cols[c.name], rates["rrn_check_digit"])
            cols[c.name] = _replace(cols[c.name], idx, lambda v: rrnlib.mistype(v, rng))
            tags.add(idx, "rrn_check_digit")
            if feed.name == "kostat_death":
                idx = _pick(rng, cols[c.name], rates["rrn_blank_death"])
                cols[c.name] = _replace(cols[c.name], idx, lambda v: "")
                tags.add(idx, "rrn_blank")
        elif c.type == "date":
            fmt = c.format or "%Y%m%d"
            idx = _pick(rng, cols[c.name], rates["date_wrong_format"])
            cols[c.name] = _replace(cols[c.name], idx, _wrong_date_format(fmt, fixed))
            tags.add(idx, f"date_wrong_format:{c.name}")
            idx = _pick(rng, cols[c.name], rates["date_impossible"])
            cols[c.name] = _replace(cols[c.name], idx, _impossible_date(fmt))
            tags.add(idx, f"date_impossible:{c.name}")
        elif c.type == "code":
            idx = _pick(rng, cols[c.name], rates["code_formatting"])
            cols[c.name] = _replace(cols[c.name], idx, _code_variant(rng))
            tags.add(idx, "code_formatting")
    return cols


def correct_rows(
    rng: np.random.Generator, feed: Feed, cols: dict[str, pa.Array], column: str, share: float
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """An earlier, wrong version of some rows (what d001 said before d002 corrected it)."""
    spec = feed.column(column)
    n = len(cols[column])
    idx = np.flatnonzero(rng.random(n) < share)
    values = spec.values

    def wrong(v: str) -> str:
        if values:
            others = [x for x in values if x != v]
            return others[int(rng.integers(0, len(others)))]
        if spec.type in ("int", "float") and v:
            return str(int(float(v)) + int(rng.integers(1, 100)) * 1000)
        return v[::-1] if v else "X"

    out = dict(cols)
    out[column] = _replace(cols[column], idx, wrong)
    return out, idx


def line_faults(rng: np.random.Generator, feed: Feed, lines: pa.Array, rates: dict[str, Any]) -> dict[str, np.ndarray]:
    """Choose the rows whose lines will be duplicated, broken or made undecodable."""
    n = len(lines)
    u = rng.random((3, n))
    return {
        "duplicate": np.flatnonzero(u[0] < rates["duplicate_rows"]),
        "wrong_field_count": np.flatnonzero(u[1] < rates["wrong_field_count"]),
        "undecodable_bytes": np.flatnonzero(u[2] < rates["undecodable_bytes"]),
    }


def apply_line_faults(
    feed: Feed,
    lines: pa.Array,
    chosen: dict[str, np.ndarray],
    pid: np.ndarray,
    tags: Tags,
    seed_rng: np.random.Generator,
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Apply chosen line faults; returns (lines, pid, tags) with duplicates inserted after their original."""
    delim = feed.delimiter

    def broken(v: str) -> str:
        body = v[:-1]
        if feed.format == "fixed":
            return (body[:-5] if int(seed_rng.integers(0, 2)) else body + "XYZ") + "\n"
        if int(seed_rng.integers(0, 2)) and delim in body:
            return body[: body.rfind(delim)] + "\n"
        return body + delim + "0" + "\n"

    def undecodable(v: str) -> str:
        if feed.format == "fixed":
            return BAD_BYTE + v[1:]
        p = v.find(delim) + 1
        return v[:p] + BAD_BYTE + v[p:]

    lines = _replace(lines, chosen["wrong_field_count"], broken)
    tags.add(chosen["wrong_field_count"], "wrong_field_count")
    lines = _replace(lines, chosen["undecodable_bytes"], undecodable)
    tags.add(chosen["undecodable_bytes"], "undecodable_bytes")
    tag_arr = tags.array()
    dup = chosen["duplicate"]
    if len(dup) == 0:
        return lines, pid, tag_arr
    order = np.sort(np.concatenate([np.arange(len(lines)), dup]))
    is_dup = np.zeros(len(order), dtype=bool)
    is_dup[1:] = order[1:] == order[:-1]
    new_tags = tag_arr[order]
    for i in np.flatnonzero(is_dup):
        new_tags[i] = "duplicate" if new_tags[i] is None else f"{new_tags[i]},duplicate"
    return lines.take(pa.array(order)), pid[order], new_tags
